"""Pure-PyTorch tile kernels (the reference executor's kernels, and the CPU fast path).

Each kernel computes the outputs of the *active* tiles only, as a (cells, C_out) block in
tile-cell order; :func:`write_tiles` stores it into the output cache. Gathers go through
the index tables of :mod:`passrt.kernels.tables`, so the work and memory traffic follow the
number of active tiles, not the map size.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

from passrt.kernels import tables
from passrt.kernels.storage import FeatureMap
from passrt.kernels.tables import TransposedWindow, Window


def gather_patches(x: FeatureMap, rows: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """(n, C, ph, pw) channels-last patches from (n, ph*pw) row indices: one index_select."""
    n = rows.shape[0]
    return x.rows.index_select(0, rows.reshape(-1)).view(n, ph, pw, x.channels).permute(0, 3, 1, 2)


def patches_to_rows(y: torch.Tensor) -> torch.Tensor:
    """(n, C, T, T) -> (n*T*T, C) in tile-cell order (a view when ``y`` is channels-last)."""
    return y.permute(0, 2, 3, 1).reshape(-1, y.shape[1])


def conv2d_tiles(x: FeatureMap, weight: torch.Tensor, bias: Optional[torch.Tensor], win: Window,
                 groups: int, tile: int, active: torch.Tensor,
                 weight_t: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Convolution outputs of the active tiles, (len(active)*tile*tile, C_out).

    A dense 1x1 conv is a row gather and one GEMM (``weight_t``: (C_in, C_out), passed in so
    the transpose is made once, not per frame). Any other conv gathers each tile's input
    patch (the tile plus its halo) and runs ``F.conv2d`` on the batch of patches.
    """
    if win.kernel == (1, 1) and groups == 1:
        rows = tables.pointwise_rows(win, tile, x.zero_row)[active].reshape(-1)
        wt = weight_t if weight_t is not None else weight.view(weight.shape[0], -1).t()
        xs = x.rows.index_select(0, rows)
        return torch.addmm(bias, xs, wt) if bias is not None else xs @ wt
    ph, pw = win.patch_size(tile)
    patches = gather_patches(x, tables.window_rows(win, tile, x.zero_row)[active], ph, pw)
    y = F.conv2d(patches, weight, bias, win.stride, 0, win.dilation, groups)
    return patches_to_rows(y)


def conv_transpose2d_tiles(x: FeatureMap, weight: torch.Tensor, bias: Optional[torch.Tensor],
                           win: TransposedWindow, groups: int, tile: int, active: torch.Tensor) -> torch.Tensor:
    """Transposed-convolution outputs of the active tiles, (len(active)*tile*tile, C_out).

    Each tile gathers the input cells whose scattered windows reach it, runs
    ``F.conv_transpose2d`` on the batch of patches without padding, and keeps the tile's
    cells (the same crop for every tile: ``tile`` is a multiple of the stride).
    """
    (_, ph, top), (_, pw, left) = win.axis(0, tile), win.axis(1, tile)
    patches = gather_patches(x, tables.transposed_window_rows(win, tile, x.zero_row)[active], ph, pw)
    y = F.conv_transpose2d(patches, weight, None, win.stride, 0, 0, groups, win.dilation)
    y = y[:, :, top:top + tile, left:left + tile]
    rows = patches_to_rows(y)
    return rows + bias if bias is not None else rows


def pool2d_tiles(x: FeatureMap, kind: str, win: Window, tile: int, active: torch.Tensor,
                 divisor: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Max or average pooling outputs of the active tiles.

    Max pooling pads with the -inf row. Average pooling sums over the window (zero padding)
    and divides by ``divisor`` (per output row, from :func:`avg_pool_divisor`), which
    reproduces ``count_include_pad`` and ``ceil_mode`` exactly.
    """
    ph, pw = win.patch_size(tile)
    fill = x.neg_inf_row if kind == "max" else x.zero_row
    patches = gather_patches(x, tables.window_rows(win, tile, fill)[active], ph, pw)
    if kind == "max":
        y = F.max_pool2d(patches, win.kernel, win.stride, 0, win.dilation)
        return patches_to_rows(y)
    y = F.avg_pool2d(patches, win.kernel, win.stride, 0, divisor_override=1)
    ho, wo = win.out_size
    out_rows = tables.output_rows(ho, wo, tile)[active].reshape(-1)
    return patches_to_rows(y) / divisor[out_rows].unsqueeze(1)


def avg_pool_divisor(win: Window, count_include_pad: bool) -> torch.Tensor:
    """Per output row (plus the 3 special rows) the divisor ``F.avg_pool2d`` uses."""
    ones = torch.ones(1, 1, win.in_h, win.in_w, dtype=torch.float64)
    pads = win.pads
    if pads[0] != pads[1] or pads[2] != pads[3]:
        raise ValueError("average pooling supports symmetric padding only")
    kw = dict(kernel_size=win.kernel, stride=win.stride, padding=(pads[0], pads[2]),
              ceil_mode=win.ceil_mode, count_include_pad=count_include_pad)
    sums = F.avg_pool2d(ones, divisor_override=1, **kw)
    means = F.avg_pool2d(ones, **kw)
    div = (sums / means).reshape(-1).float()
    return torch.cat([div, torch.ones(3)])


def resample_tiles(x: FeatureMap, out_h: int, out_w: int, mode: str, align_corners: bool,
                   scales: tuple, tile: int, active: torch.Tensor) -> torch.Tensor:
    """Nearest or bilinear upsampling outputs of the active tiles (weighted row gathers)."""
    src, wts = tables.resample_sources(x.height, x.width, out_h, out_w, mode, align_corners, *scales)
    out_rows = tables.output_rows(out_h, out_w, tile)[active].reshape(-1)
    rows, w = src[out_rows], wts[out_rows].to(x.rows.dtype)
    gathered = x.rows.index_select(0, rows.reshape(-1)).view(rows.shape[0], rows.shape[1], -1)
    if rows.shape[1] == 1:
        return gathered[:, 0]
    return torch.einsum("nkc,nk->nc", gathered, w)


def move_tiles(x: FeatureMap, table: tables.MoveTable, out_h: int, out_w: int, tile: int,
               active: torch.Tensor) -> torch.Tensor:
    """Outputs of a data-movement op (:func:`tables.move_table`) on the active tiles: one gather."""
    out_rows = tables.output_rows(out_h, out_w, tile)[active].reshape(-1)
    if table.rows is not None:
        y = x.rows.index_select(0, table.rows.index_select(0, out_rows))
        if table.chans is not None:
            y = y.index_select(1, table.chans)
    else:
        idx = table.flat.index_select(0, out_rows)
        y = x.rows.view(-1).index_select(0, idx.reshape(-1)).view(idx.shape)
    return y + table.fill.index_select(0, out_rows).to(y.dtype) if table.fill is not None else y


def write_tiles(out: FeatureMap, tile: int, active: torch.Tensor, values: torch.Tensor) -> None:
    """Store (len(active)*tile*tile, C) values into the active tiles of ``out``."""
    rows = tables.output_rows(out.height, out.width, tile)[active].reshape(-1)
    out.rows.index_copy_(0, rows, values)


def gather_tiles(x: FeatureMap, tile: int, active: torch.Tensor) -> torch.Tensor:
    """The stored values of the active tiles of ``x`` (same grid as the output), (cells, C)."""
    rows = tables.output_rows(x.height, x.width, tile)[active].reshape(-1)
    return x.rows.index_select(0, rows)


def sparse_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                  out: torch.Tensor, tile_mask: torch.Tensor, *, stride=1, padding=0, dilation=1,
                  groups: int = 1, tile: int = 4,
                  activation: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                  residual: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Functional sparse convolution on ordinary NCHW tensors (batch 1), for tests and users.

    Recomputes ``activation(conv2d(x) + bias) + residual`` on the tiles where ``tile_mask``
    (ceil(Ho/tile), ceil(Wo/tile)) is true and writes them into ``out`` (1, C_out, Ho, Wo),
    which keeps its values elsewhere. ``padding`` is an int, a pair, or a 4-tuple
    (top, bottom, left, right). Returns ``out``.
    """
    pair = lambda v: (v, v) if isinstance(v, int) else tuple(v)
    if isinstance(padding, int) or len(padding) == 2:
        ph_, pw_ = pair(padding)
        pads = (ph_, ph_, pw_, pw_)
    else:
        pads = tuple(padding)
    win = Window(x.shape[2], x.shape[3], tuple(weight.shape[2:]), pair(stride), pair(dilation), pads)
    if tuple(out.shape[2:]) != win.out_size:
        raise ValueError(f"out has spatial size {tuple(out.shape[2:])}, the conv gives {win.out_size}")
    if tuple(tile_mask.shape) != tables.tile_grid(*win.out_size, tile):
        raise ValueError(f"tile_mask must be {tables.tile_grid(*win.out_size, tile)}, got {tuple(tile_mask.shape)}")
    active = tile_mask.reshape(-1).nonzero().reshape(-1)
    src, dst = FeatureMap.from_nchw(x), FeatureMap.from_nchw(out)
    y = conv2d_tiles(src, weight, bias, win, groups, tile, active)
    if activation is not None:
        y = activation(y)
    if residual is not None:
        y = y + gather_tiles(FeatureMap.from_nchw(residual), tile, active)
    write_tiles(dst, tile, active, y)
    out.copy_(dst.nchw())
    return out
