"""Change maps and tile masks.

A *change map* is a (1, 1, H, W) float tensor of 0/1 on one layer's output cells (float so
that max pooling can push it through receptive fields); ``None`` means "nothing changed".
A *tile mask* is the same on the layer's tile grid.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from passrt.kernels.tables import Window


def union(maps: Sequence[Optional[torch.Tensor]]) -> Optional[torch.Tensor]:
    present = [m for m in maps if m is not None]
    if not present:
        return None
    out = present[0]
    for m in present[1:]:
        out = torch.maximum(out, m)
    return out


def through_window(changed: torch.Tensor, win: Window) -> torch.Tensor:
    """Output cells whose window (kernel, stride, dilation, padding) touches a changed input cell."""
    ho, wo = win.out_size
    top, left = win.pads[0], win.pads[2]
    # Pad (or crop) bottom/right so that max pooling yields exactly (ho, wo) windows.
    bottom = (ho - 1) * win.stride[0] + win.dilation[0] * (win.kernel[0] - 1) + 1 - win.in_h - top
    right = (wo - 1) * win.stride[1] + win.dilation[1] * (win.kernel[1] - 1) + 1 - win.in_w - left
    padded = F.pad(changed, (left, right, top, bottom))
    if win.kernel == (1, 1) and win.stride == (1, 1):
        return padded
    return F.max_pool2d(padded, win.kernel, win.stride, 0, win.dilation)


def to_tiles(changed: torch.Tensor, tile: int) -> torch.Tensor:
    """OR-reduce a change map to its tile grid."""
    if tile == 1:
        return changed
    return F.max_pool2d(changed, tile, tile, ceil_mode=True)


def from_tiles(tiles: torch.Tensor, tile: int, height: int, width: int) -> torch.Tensor:
    """Expand a tile mask back to cells (the cells that a sparse run rewrote)."""
    if tile == 1:
        return tiles
    return F.interpolate(tiles, scale_factor=tile, mode="nearest")[:, :, :height, :width]


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    if radius <= 0:
        return mask
    return F.max_pool2d(mask, 2 * radius + 1, 1, radius)


def pixel_change(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-pixel change: max over channels of |x - ref|, (1, 1, H, W)."""
    return torch.sub(x, ref).abs_().amax(1, keepdim=True)


class BlockGrid:
    """A mask on a coarse grid of ``block``-cell blocks over a (height, width) map, rescaled on
    demand to any layer's tile grid (a tile is active if it covers an active block).

    RegionDrop's common mask (blocks of frame pixels) and a PASS gate's keep mask (patches of
    the gated layer's input) are both this; an integral image makes each rescale a few gathers.
    """

    def __init__(self, blocks: torch.Tensor, block: int, height: int, width: int):
        self.blocks, self.block, self.hw = blocks, block, (height, width)
        self._integral = F.pad(blocks[0, 0].cumsum(0).cumsum(1), (1, 0, 1, 0))

    def tiles_for(self, h: int, w: int, tile: int) -> torch.Tensor:
        """(1, 1, Ht, Wt) 0/1 tiles of an (h, w) layer with ``tile``-cell tiles."""
        (r0, r1), (c0, c1) = (block_span(n, map_n, tile, self.block)  # cached: static per layer
                              for n, map_n in ((h, self.hw[0]), (w, self.hw[1])))
        s = self._integral
        count = s[r1][:, c1] - s[r0][:, c1] - s[r1][:, c0] + s[r0][:, c0]
        return (count > 0).float().view(1, 1, len(r0), len(c0))


@lru_cache(maxsize=1024)
def block_span(n: int, map_n: int, tile: int, block: int):
    """Per tile of an n-cell axis: the first and one-past-last block (of a map_n-cell axis) it covers."""
    ratio = map_n / n  # map cells per layer cell along this axis
    starts = torch.arange(0, n, tile, dtype=torch.float64)
    ends = torch.clamp(starts + tile, max=n)
    lo = torch.floor(starts * ratio / block).long()
    hi = torch.ceil(torch.clamp(torch.ceil(ends * ratio), max=map_n) / block).long()
    return lo, hi
