"""Index tables that map tiles to storage rows.

A layer's output grid (Ho, Wo) is cut into T x T tiles (row-major tile ids; edge tiles
overhang). For each tile the tables list the output rows it writes and the input rows its
computation reads. They depend only on the geometry, so they are built once per input
resolution and cached; per frame the engine only indexes them with the active tile ids.
"""

from __future__ import annotations

from dataclasses import dataclass
import math
from functools import lru_cache
from typing import Optional

import torch


@dataclass(frozen=True)
class Window:
    """Geometry of a sliding-window op (conv or pool) on one input size."""

    in_h: int
    in_w: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, bottom, left, right
    ceil_mode: bool = False

    @property
    def out_size(self) -> tuple[int, int]:
        return tuple(
            _out_len(n, k, s, d, p0, p1, self.ceil_mode)
            for n, k, s, d, p0, p1 in (
                (self.in_h, self.kernel[0], self.stride[0], self.dilation[0], self.pads[0], self.pads[1]),
                (self.in_w, self.kernel[1], self.stride[1], self.dilation[1], self.pads[2], self.pads[3]),
            )
        )

    def patch_size(self, tile: int) -> tuple[int, int]:
        """Input rows/cols read by one tile of ``tile`` x ``tile`` outputs."""
        return tuple((tile - 1) * s + (k - 1) * d + 1
                     for k, s, d in zip(self.kernel, self.stride, self.dilation))


@dataclass(frozen=True)
class TransposedWindow:
    """Geometry of a transposed convolution on one input size.

    Input cell ``i`` adds into output cells ``i * stride - pad + k * dilation`` (k < kernel);
    ``pads`` are the cells cropped at the top/left of the full output (PyTorch's ``padding``),
    ``out_size`` its length (which fixes the crop at the bottom/right: ``output_padding``).
    """

    in_h: int
    in_w: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    pads: tuple[int, int]  # top, left
    out_size: tuple[int, int]

    def tile_multiple(self) -> int:
        """Tiles must be a multiple of this many cells: then every tile starts at the same phase
        of the stride, so all tiles share one patch shape and one crop (a batched kernel)."""
        return math.lcm(*self.stride)

    def axis(self, a: int, tile: int) -> tuple[int, int, int]:
        """Along axis ``a`` (0: rows, 1: cols), for ``tile``-cell tiles: (first input of tile 0's
        patch, inputs per patch, offset of the tile's first output in the patch's full output)."""
        k, s, d, p = self.kernel[a], self.stride[a], self.dilation[a], self.pads[a]
        lo = (p - d * (k - 1)) // s  # the earliest input that reaches output 0 (floor, may be < 0)
        crop = p - s * lo
        n = (tile - 1 + p) // s - lo + 1  # inputs up to the last that reaches the tile's last output
        # Kernels smaller than the stride leave gaps: read enough inputs for the patch's output to
        # cover the whole tile (the extra inputs reach only cells after it).
        n = max(n, -(-(crop + tile - d * (k - 1) - 1) // s) + 1)
        return lo, n, crop


def _out_len(n: int, k: int, s: int, d: int, p0: int, p1: int, ceil_mode: bool) -> int:
    span = n + p0 + p1 - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p0:  # PyTorch: the last window must start inside
        out -= 1
    return out


def tile_grid(h: int, w: int, tile: int) -> tuple[int, int]:
    return -(-h // tile), -(-w // tile)


@lru_cache(maxsize=1024)
def output_rows(h: int, w: int, tile: int) -> torch.Tensor:
    """(tiles, tile*tile) rows written by each tile; cells outside the map go to the trash row."""
    ht, wt = tile_grid(h, w, tile)
    i = torch.arange(ht * tile).view(ht, 1, tile, 1)
    j = torch.arange(wt * tile).view(1, wt, 1, tile)
    rows = torch.where((i < h) & (j < w), i * w + j, torch.tensor(h * w + 1))
    return rows.reshape(ht * wt, tile * tile).contiguous()


@lru_cache(maxsize=1024)
def window_rows(win: Window, tile: int, fill_row: int) -> torch.Tensor:
    """(tiles, ph*pw) input rows of each tile's input patch; padding reads ``fill_row``."""
    ho, wo = win.out_size
    ht, wt = tile_grid(ho, wo, tile)
    ph, pw = win.patch_size(tile)
    r = (torch.arange(ht) * tile * win.stride[0] - win.pads[0]).view(ht, 1, 1, 1) + torch.arange(ph).view(1, 1, ph, 1)
    c = (torch.arange(wt) * tile * win.stride[1] - win.pads[2]).view(1, wt, 1, 1) + torch.arange(pw).view(1, 1, 1, pw)
    inside = (r >= 0) & (r < win.in_h) & (c >= 0) & (c < win.in_w)
    rows = torch.where(inside, r * win.in_w + c, torch.tensor(fill_row))
    return rows.reshape(ht * wt, ph * pw).contiguous()


@lru_cache(maxsize=1024)
def transposed_window_rows(win: TransposedWindow, tile: int, fill_row: int) -> torch.Tensor:
    """(tiles, ph*pw) input rows each tile of a transposed conv reads; outside the map: ``fill_row``."""
    assert tile % win.tile_multiple() == 0, (tile, win.stride)
    ht, wt = tile_grid(*win.out_size, tile)
    (r_lo, ph, _), (c_lo, pw, _) = win.axis(0, tile), win.axis(1, tile)
    r = (torch.arange(ht) * (tile // win.stride[0]) + r_lo).view(ht, 1, 1, 1) + torch.arange(ph).view(1, 1, ph, 1)
    c = (torch.arange(wt) * (tile // win.stride[1]) + c_lo).view(1, wt, 1, 1) + torch.arange(pw).view(1, 1, 1, pw)
    inside = (r >= 0) & (r < win.in_h) & (c >= 0) & (c < win.in_w)
    rows = torch.where(inside, r * win.in_w + c, torch.tensor(fill_row))
    return rows.reshape(ht * wt, ph * pw).contiguous()


@lru_cache(maxsize=1024)
def pointwise_rows(win: Window, tile: int, fill_row: int) -> torch.Tensor:
    """(tiles, tile*tile) input row of each output cell of a 1x1 window (any stride)."""
    ho, wo = win.out_size
    ht, wt = tile_grid(ho, wo, tile)
    r = (torch.arange(ht * tile) * win.stride[0] - win.pads[0]).view(ht, 1, tile, 1)
    c = (torch.arange(wt * tile) * win.stride[1] - win.pads[2]).view(1, wt, 1, tile)
    i = torch.arange(ht * tile).view(ht, 1, tile, 1)
    j = torch.arange(wt * tile).view(1, wt, 1, tile)
    inside = (r >= 0) & (r < win.in_h) & (c >= 0) & (c < win.in_w) & (i < ho) & (j < wo)
    rows = torch.where(inside, r * win.in_w + c, torch.tensor(fill_row))
    return rows.reshape(ht * wt, tile * tile).contiguous()


@lru_cache(maxsize=64)
def resample_sources(in_h: int, in_w: int, out_h: int, out_w: int, mode: str, align_corners: bool,
                     scale_h: float | None = None, scale_w: float | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per output row: the input rows it reads and their weights, as (out_h*out_w + 3, K) tables.

    The three extra entries (for the output's zero/trash/-inf rows) read the input's zero row
    with weight 0, so the tables can be indexed directly with ``output_rows``.
    Matches ``F.interpolate`` for modes 'nearest', 'nearest-exact' (K=1) and 'bilinear' (K=4).
    ``scale_h``/``scale_w`` are input/output ratios; PyTorch uses 1/scale_factor when a
    scale factor was given, which differs from in/out when the output size was rounded.
    """
    def axis(n_in: int, n_out: int, scale: float | None):
        ratio = scale if scale is not None else n_in / n_out
        i = torch.arange(n_out, dtype=torch.float64)
        if mode in ("nearest", "nearest-exact"):
            pos = i * ratio if mode == "nearest" else (i + 0.5) * ratio
            src = torch.clamp(pos.floor().long(), max=n_in - 1)
            return [(src, torch.ones(n_out, dtype=torch.float64))]
        if align_corners:
            pos = i * ((n_in - 1) / (n_out - 1) if n_out > 1 else 0.0)
        else:
            pos = ((i + 0.5) * ratio - 0.5).clamp(min=0)
        i0 = pos.floor().long().clamp(max=n_in - 1)
        i1 = (i0 + 1).clamp(max=n_in - 1)
        lam = pos - i0
        return [(i0, 1 - lam), (i1, lam)]

    rows, weights = [], []
    for ri, rw in axis(in_h, out_h, scale_h):
        for ci, cw in axis(in_w, out_w, scale_w):
            rows.append((ri.view(-1, 1) * in_w + ci.view(1, -1)).reshape(-1))
            weights.append((rw.view(-1, 1) * cw.view(1, -1)).reshape(-1))
    rows_t = torch.stack(rows, 1)
    weights_t = torch.stack(weights, 1).float()
    pad_rows = torch.full((3, rows_t.shape[1]), in_h * in_w, dtype=torch.long)
    pad_w = torch.zeros(3, rows_t.shape[1])
    return torch.cat([rows_t, pad_rows]), torch.cat([weights_t, pad_w])


@dataclass
class MoveTable:
    """Where each output value of a data-movement op comes from (see :func:`move_table`).

    Compact form (pads, crops, spatial slices, flips, channel slices: every output cell copies
    channels ``chans`` of one input row): ``rows`` (H'*W' + 3,) input rows, ``chans`` (C',) or None
    for all channels in order. Otherwise (pixel shuffle, channel padding): ``flat`` (H'*W' + 3, C')
    positions in the flattened input rows. ``fill``: constants to add, (H'*W' + 3, 1 or C'), or None.
    Constants and the three special output rows read the input's zero row.
    """

    rows: Optional[torch.Tensor]
    chans: Optional[torch.Tensor]
    flat: Optional[torch.Tensor]
    fill: Optional[torch.Tensor]

    def cell_rows(self, in_channels: int) -> torch.Tensor:
        """(H'*W' + 3, K) input rows each output cell reads (K = 1 in the compact form)."""
        return self.rows[:, None] if self.rows is not None else self.flat // in_channels


def move_table(fn, in_shape: tuple[int, int, int], out_shape: tuple[int, int, int]) -> MoveTable:
    """What a pure data-movement op (padding, cropping, slicing, pixel (un)shuffle) reads.

    ``fn`` maps a (1, C, H, W) tensor to a (1, C', H', W') one whose every value is one input value
    or a constant. Applied to a map of flat row-storage positions ((y * W + x) * C + c), it says
    where each output value comes from; applied twice (positions + 1, + 2) it tells the constants
    (the same both times) from the moved values. Built once per input size.
    """
    c, h, w = in_shape
    c_out = out_shape[0]
    flat = torch.arange(h * w * c, dtype=torch.float64).view(1, h, w, c).permute(0, 3, 1, 2)
    with torch.no_grad():
        a, b = fn(flat + 1), fn(flat + 2)
    if tuple(a.shape[1:]) != tuple(out_shape):
        raise ValueError(f"the op gives {tuple(a.shape[1:])} on an index map, {tuple(out_shape)} on values")
    a, b = (t.permute(0, 2, 3, 1).reshape(-1, c_out) for t in (a, b))
    const = a == b
    src = torch.where(const, torch.tensor(float(h * w * c), dtype=torch.float64), a - 1).long()
    zero_row = h * w
    fill = None
    if bool(const.any()):
        values = torch.where(const, a, torch.zeros((), dtype=a.dtype)).float()
        if bool((values == values[:, :1]).all()):
            values = values[:, :1]  # one constant per cell (a pad value): no per-channel table
        fill = torch.cat([values, values.new_zeros(3, values.shape[1])])
    row, chan = src // c, src % c
    regular = ~const.any(1)
    compact = not bool((const.any(1) & ~const.all(1)).any())  # no cell mixes constants and values
    chans = torch.zeros(c_out, dtype=torch.long)
    if compact and bool(regular.any()):
        r, ch = row[regular], chan[regular]
        compact = bool((r == r[:, :1]).all()) and bool((ch == ch[:1]).all())
        chans = ch[0]
    if compact:
        rows = torch.cat([torch.where(regular, row[:, 0], torch.tensor(zero_row)), torch.full((3,), zero_row)])
        identity = c_out == c and bool((chans == torch.arange(c)).all())
        return MoveTable(rows, None if identity else chans, None, fill)
    return MoveTable(None, None, torch.cat([src, torch.full((3, c_out), h * w * c, dtype=torch.long)]), fill)
