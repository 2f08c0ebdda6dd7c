"""Dense activation storage shared by the tile kernels."""

from __future__ import annotations

import torch


class FeatureMap:
    """A (1, C, H, W) activation stored as ``rows``: (H*W + 3, C), i.e. NHWC plus three special rows.

    - ``zero_row`` (H*W) is always zero: gathers read it for zero padding;
    - ``trash_row`` (H*W + 1) absorbs writes of tile cells that fall outside the map
      (edge tiles), so every tile has the same shape and no kernel needs bounds checks;
    - ``neg_inf_row`` (H*W + 2) is -inf: max pooling reads it for padding.

    Rows 0..H*W-1 always hold valid values (the cache); ``nchw()`` views them as an ordinary
    channels-last NCHW tensor without copying.
    """

    __slots__ = ("rows", "channels", "height", "width")

    def __init__(self, channels: int, height: int, width: int,
                 dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"):
        self.channels, self.height, self.width = channels, height, width
        self.rows = torch.zeros(height * width + 3, channels, dtype=dtype, device=device)
        self.rows[self.neg_inf_row] = float("-inf")

    @classmethod
    def stacked(cls, count: int, channels: int, height: int, width: int,
                dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, list["FeatureMap"]]:
        """``count`` streams' caches of one value as one (count, H*W + 3, C) tensor (the native kernels run
        all streams' tiles in one call on it: passrt/engine/batched.py) and each stream's map over its slice."""
        stack = torch.zeros(count, height * width + 3, channels, dtype=dtype)
        stack[:, height * width + 2] = float("-inf")  # each slice's neg_inf_row
        maps = []
        for rows in stack:
            fm = cls.__new__(cls)
            fm.channels, fm.height, fm.width, fm.rows = channels, height, width, rows
            maps.append(fm)
        return stack, maps

    @classmethod
    def from_nchw(cls, t: torch.Tensor) -> "FeatureMap":
        _, c, h, w = t.shape
        fm = cls(c, h, w, t.dtype, t.device)
        fm.write_nchw(t)
        return fm

    @property
    def cells(self) -> int:
        return self.height * self.width

    @property
    def zero_row(self) -> int:
        return self.cells

    @property
    def trash_row(self) -> int:
        return self.cells + 1

    @property
    def neg_inf_row(self) -> int:
        return self.cells + 2

    def nhwc(self) -> torch.Tensor:
        return self.rows[: self.cells].view(1, self.height, self.width, self.channels)

    def nchw(self) -> torch.Tensor:
        return self.nhwc().permute(0, 3, 1, 2)

    def write_nchw(self, t: torch.Tensor) -> None:
        self.nhwc().copy_(t.permute(0, 2, 3, 1))
