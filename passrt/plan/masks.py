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

from passrt.kernels.tables import TransposedWindow, Window


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


def through_transposed_window(changed: torch.Tensor, win: TransposedWindow) -> torch.Tensor:
    """Output cells of a transposed conv that a changed input cell scatters into (its window
    k * dilation after ``i * stride - pad``): the map itself pushed through the transposed conv
    with an all-ones kernel, cropped to the output."""
    ones = changed.new_ones(1, 1, *win.kernel)
    full = F.conv_transpose2d(changed, ones, None, win.stride, 0, 0, 1, win.dilation)
    (top, left), (ho, wo) = win.pads, win.out_size
    out = F.pad(full, (-left, left + wo - full.shape[3], -top, top + ho - full.shape[2]))
    return (out > 0).to(changed.dtype)


def to_tiles(changed: torch.Tensor, tile: int) -> torch.Tensor:
    """OR-reduce a change map to its tile grid."""
    if tile == 1:
        return changed
    return F.max_pool2d(changed, tile, tile, ceil_mode=True)


def cells_of(tiles: torch.Tensor, tile: int, height: int, width: int) -> torch.Tensor:
    """(N, 1, Ht, Wt) tiles (or patches, or blocks) -> the (N, 1, height, width) cells they cover.

    Expand + Reshape + Slice: traceable (exports as standard ONNX ops) and differentiable (gate
    training), so every user of a tile mask on cells shares it.
    """
    n, _, ht, wt = tiles.shape
    cells = tiles.reshape(n, 1, ht, 1, wt, 1).expand(n, 1, ht, tile, wt, tile)
    return cells.reshape(n, 1, ht * tile, wt * tile)[:, :, :height, :width]


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    if radius <= 0:
        return mask
    return F.max_pool2d(mask, 2 * radius + 1, 1, radius)


def pixel_change(x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Per-pixel change: max over channels of |x - ref|, (1, 1, H, W)."""
    return torch.sub(x, ref).abs_().amax(1, keepdim=True)


@lru_cache(maxsize=1024)
def block_span(n: int, map_n: int, tile: int, block: int):
    """Per tile of an n-cell axis: the first and one-past-last block (of a map_n-cell axis) it covers."""
    ratio = map_n / n  # map cells per layer cell along this axis
    starts = torch.arange(0, n, tile, dtype=torch.float64)
    ends = torch.clamp(starts + tile, max=n)
    lo = torch.floor(starts * ratio / block).long()
    hi = torch.ceil(torch.clamp(torch.ceil(ends * ratio), max=map_n) / block).long()
    return lo, hi


def span_matrices(h: int, w: int, tile: int, map_h: int, map_w: int, block: int):
    """0/1 matrices R (Ht, Hb), C (Wb, Wt) that rescale a block mask on a (map_h, map_w) map to the
    tile grid of an (h, w) layer: ``tiles = (R @ blocks @ C) > 0`` (a tile is active if it covers an
    active block). Two small matmuls: traceable, no host sync, the same on every device."""
    out = []
    for n, map_n in ((h, map_h), (w, map_w)):
        lo, hi = block_span(n, map_n, tile, block)
        r = torch.arange(-(-map_n // block))
        out.append(((r[None] >= lo[:, None]) & (r[None] < hi[:, None])).float())
    return out[0], out[1].t().contiguous()
