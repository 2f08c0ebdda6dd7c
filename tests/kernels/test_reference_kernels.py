"""Tile kernels against dense PyTorch, masked to the active tiles.

Expected value: the dense op's output where the tile mask is on, and the untouched cache
(random values) elsewhere. Every case is checked on its own; no error is averaged.
"""

import zlib

import pytest
import torch
import torch.nn.functional as F

from passrt.kernels import FeatureMap, sparse_conv2d
from passrt.kernels import reference as K
from passrt.kernels.tables import TransposedWindow, Window, tile_grid

TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float64: dict(rtol=1e-9, atol=1e-9),
       torch.bfloat16: dict(rtol=2e-2, atol=5e-2)}


def cell_mask(tile_mask, tile, h, w):
    return tile_mask.repeat_interleave(tile, 0).repeat_interleave(tile, 1)[:h, :w]


def make_mask(kind, grid, gen):
    ht, wt = grid
    if kind == "all-off":
        return torch.zeros(ht, wt, dtype=torch.bool)
    if kind == "all-on":
        return torch.ones(ht, wt, dtype=torch.bool)
    if kind == "edges":  # last row and column: the tiles that overhang the map
        m = torch.zeros(ht, wt, dtype=torch.bool)
        m[-1, :] = True
        m[:, -1] = True
        return m
    return torch.rand(ht, wt, generator=gen) > 0.6


def expected(dense_out, cache, tile_mask, tile):
    keep = cell_mask(tile_mask, tile, *dense_out.shape[2:])
    return torch.where(keep, dense_out, cache)


CONV_CASES = [
    # kernel, stride, dilation, groups, padding, c_in, c_out, h, w
    (1, 1, 1, 1, 0, 8, 16, 12, 12),
    (1, 2, 1, 1, 0, 6, 4, 13, 9),
    (3, 1, 1, 1, 1, 5, 7, 15, 11),
    (3, 2, 1, 1, 1, 4, 8, 17, 23),
    (3, 1, 2, 1, 2, 4, 4, 14, 10),
    (3, 1, 1, 8, 1, 8, 8, 16, 16),  # depthwise
    (3, 2, 1, 6, (0, 1, 0, 1), 6, 6, 16, 12),  # depthwise, TF-SAME asymmetric
    (3, 1, 1, 2, 1, 4, 6, 9, 13),  # grouped
    (5, 2, 1, 1, 2, 3, 5, 21, 19),
    (5, 1, 3, 3, 6, 6, 3, 19, 17),
    (7, 2, 1, 1, 3, 3, 4, 31, 30),
    (1, 1, 1, 4, 0, 8, 8, 7, 7),  # grouped 1x1
    (3, 3, 1, 1, 0, 2, 3, 11, 14),  # no padding, stride 3
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "k{}s{}d{}g{}p{}_{}x{}".format(*c[:5], *c[7:]))
@pytest.mark.parametrize("tile", [1, 2, 4])
@pytest.mark.parametrize("mask_kind", ["all-off", "all-on", "random", "edges"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sparse_conv2d_matches_masked_dense(case, tile, mask_kind, dtype):
    k, s, d, g, p, cin, cout, h, w = case
    # crc32, not hash(): hash() of strings changes per process (PYTHONHASHSEED), so a failing
    # case would not come back on the next run.
    gen = torch.Generator().manual_seed(zlib.crc32(repr((case, tile, mask_kind)).encode()))
    x = torch.randn(1, cin, h, w, generator=gen, dtype=dtype)
    weight = torch.randn(cout, cin // g, k, k, generator=gen, dtype=dtype)
    bias = torch.randn(cout, generator=gen, dtype=dtype)
    if isinstance(p, tuple):
        dense = F.conv2d(F.pad(x, (p[2], p[3], p[0], p[1])), weight, bias, s, 0, d, g)
    else:
        dense = F.conv2d(x, weight, bias, s, p, d, g)
    cache = torch.randn(dense.shape, generator=gen, dtype=dtype)
    tile_mask = make_mask(mask_kind, tile_grid(*dense.shape[2:], tile), gen)
    out = cache.clone()
    sparse_conv2d(x, weight, bias, out, tile_mask, stride=s, padding=p, dilation=d, groups=g, tile=tile)
    torch.testing.assert_close(out, expected(dense, cache, tile_mask, tile), **TOL[dtype])


@pytest.mark.parametrize("tile", [2, 4, 8])
def test_fused_activation_and_residual(tile):
    gen = torch.Generator().manual_seed(tile)
    x = torch.randn(1, 6, 20, 18, generator=gen)
    weight, bias = torch.randn(6, 6, 3, 3, generator=gen), torch.randn(6, generator=gen)
    residual = torch.randn(1, 6, 20, 18, generator=gen)
    dense = F.relu6(F.conv2d(x, weight, bias, 1, 1)) + residual
    cache = torch.randn(dense.shape, generator=gen)
    tile_mask = make_mask("random", tile_grid(20, 18, tile), gen)
    out = cache.clone()
    sparse_conv2d(x, weight, bias, out, tile_mask, padding=1, tile=tile,
                  activation=F.relu6, residual=residual)
    torch.testing.assert_close(out, expected(dense, cache, tile_mask, tile))


def test_bfloat16_conv():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(1, 8, 16, 16, generator=gen).bfloat16()
    weight = torch.randn(8, 1, 3, 3, generator=gen).bfloat16()
    dense = F.conv2d(x, weight, None, 1, 1, 1, 8)
    cache = torch.zeros_like(dense)
    tile_mask = make_mask("random", tile_grid(16, 16, 4), gen)
    out = cache.clone()
    sparse_conv2d(x, weight, None, out, tile_mask, padding=1, groups=8, tile=4)
    torch.testing.assert_close(out, expected(dense, cache, tile_mask, 4), **TOL[torch.bfloat16])


def test_shape_errors_are_clear():
    x, w = torch.randn(1, 2, 8, 8), torch.randn(2, 2, 3, 3)
    with pytest.raises(ValueError, match="tile_mask must be"):
        sparse_conv2d(x, w, None, torch.zeros(1, 2, 8, 8), torch.ones(3, 3, dtype=torch.bool), padding=1, tile=4)
    with pytest.raises(ValueError, match="spatial size"):
        sparse_conv2d(x, w, None, torch.zeros(1, 2, 7, 8), torch.ones(2, 2, dtype=torch.bool), padding=1, tile=4)


POOL_CASES = [
    # kind, kernel, stride, padding, dilation, ceil_mode, count_include_pad, h, w
    ("max", 2, 2, 0, 1, False, True, 16, 14),
    ("max", 3, 2, 1, 1, False, True, 15, 17),
    ("max", 3, 2, 1, 1, True, True, 15, 16),
    ("max", 3, 1, 1, 2, False, True, 12, 12),
    ("avg", 2, 2, 0, 1, False, True, 16, 14),
    ("avg", 3, 1, 1, 1, False, True, 13, 11),
    ("avg", 3, 2, 1, 1, False, False, 15, 17),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=str)
@pytest.mark.parametrize("mask_kind", ["all-on", "random", "edges"])
def test_pool_tiles_match_dense(case, mask_kind):
    kind, k, s, p, d, ceil, cip, h, w = case
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(1, 5, h, w, generator=gen) - 2  # mostly negative: catches zero padding in max pooling
    if kind == "max":
        dense = F.max_pool2d(x, k, s, p, d, ceil)
    else:
        dense = F.avg_pool2d(x, k, s, p, ceil, cip)
    tile = 2
    win = Window(h, w, (k, k), (s, s), (d, d), (p, p, p, p), ceil)
    assert win.out_size == tuple(dense.shape[2:])
    tile_mask = make_mask(mask_kind, tile_grid(*dense.shape[2:], tile), gen)
    active = tile_mask.reshape(-1).nonzero().reshape(-1)
    src, out = FeatureMap.from_nchw(x), FeatureMap.from_nchw(torch.zeros_like(dense))
    divisor = K.avg_pool_divisor(win, cip) if kind == "avg" else None
    K.write_tiles(out, tile, active, K.pool2d_tiles(src, kind, win, tile, active, divisor))
    torch.testing.assert_close(out.nchw(), expected(dense, torch.zeros_like(dense), tile_mask, tile))


@pytest.mark.parametrize("mode,align,size,scale", [
    ("nearest", False, None, 2.0), ("nearest", False, (17, 9), None), ("nearest-exact", False, None, 2.0),
    ("bilinear", False, None, 2.0), ("bilinear", True, None, 2.0), ("bilinear", False, (13, 21), None),
    ("nearest", False, None, 1.5),
])
def test_resample_tiles_match_interpolate(mode, align, size, scale):
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 7, 9, generator=gen)
    kw = {"align_corners": align} if mode == "bilinear" else {}
    dense = F.interpolate(x, size=size, scale_factor=scale, mode=mode, **kw)
    tile = 4
    tile_mask = make_mask("random", tile_grid(*dense.shape[2:], tile), gen)
    active = tile_mask.reshape(-1).nonzero().reshape(-1)
    scales = (None, None) if scale is None or (mode == "bilinear" and align) else (1 / scale, 1 / scale)
    src, out = FeatureMap.from_nchw(x), FeatureMap.from_nchw(torch.zeros_like(dense))
    y = K.resample_tiles(src, *dense.shape[2:], mode, align, scales, tile, active)
    K.write_tiles(out, tile, active, y)
    torch.testing.assert_close(out.nchw(), expected(dense, torch.zeros_like(dense), tile_mask, tile))


def test_special_rows_stay_intact():
    """Writes of overhanging tile cells go to the trash row, never to the zero or -inf rows."""
    fm = FeatureMap(3, 5, 5)
    active = torch.arange(tile_grid(5, 5, 4)[0] * tile_grid(5, 5, 4)[1])
    K.write_tiles(fm, 4, active, torch.full((active.numel() * 16, 3), 7.0))
    assert torch.all(fm.rows[fm.zero_row] == 0)
    assert torch.all(fm.rows[fm.neg_inf_row] == float("-inf"))
    assert torch.all(fm.nchw() == 7.0)


TRANSPOSED_CASES = [
    # kernel, stride, padding, output_padding, dilation, groups, c_in, c_out, h, w
    (2, 2, 0, 0, 1, 1, 4, 6, 7, 9),  # the U-Net upsampler
    (4, 2, 1, 0, 1, 1, 5, 3, 6, 8),  # CenterNet / DCGAN
    (3, 2, 1, 1, 1, 1, 3, 4, 5, 7),  # "same" x2 with output_padding
    (3, 1, 1, 0, 1, 2, 4, 6, 9, 6),  # grouped, stride 1
    (1, 2, 0, 1, 1, 1, 3, 3, 5, 5),  # kernel smaller than the stride: gaps hold only the bias
    (2, 3, 0, 2, 1, 1, 2, 3, 4, 6),  # kernel smaller than the stride, stride 3
    (3, 2, 2, 1, 2, 1, 3, 2, 6, 5),  # dilated
    (4, 4, 0, 0, 1, 4, 4, 4, 3, 5),  # depthwise x4
    (5, 3, 2, 2, 1, 1, 2, 5, 4, 4),
    (3, 1, 0, 0, 1, 1, 3, 3, 6, 6),  # no padding: the output grows
]


@pytest.mark.parametrize("case", TRANSPOSED_CASES, ids=lambda c: "k{}s{}p{}op{}d{}g{}".format(*c[:6]))
@pytest.mark.parametrize("multiple", [1, 2])
@pytest.mark.parametrize("mask_kind", ["all-off", "all-on", "random", "edges"])
def test_conv_transpose_tiles_match_masked_dense(case, multiple, mask_kind):
    k, s, p, op, d, g, cin, cout, h, w = case
    gen = torch.Generator().manual_seed(zlib.crc32(repr((case, multiple, mask_kind)).encode()))
    x = torch.randn(1, cin, h, w, generator=gen, dtype=torch.float64)
    weight = torch.randn(cin, cout // g, k, k, generator=gen, dtype=torch.float64)
    bias = torch.randn(cout, generator=gen, dtype=torch.float64)
    dense = F.conv_transpose2d(x, weight, bias, s, p, op, g, d)
    win = TransposedWindow(h, w, (k, k), (s, s), (d, d), (p, p), tuple(dense.shape[2:]))
    tile = win.tile_multiple() * multiple
    cache = torch.randn(dense.shape, generator=gen, dtype=torch.float64)
    tile_mask = make_mask(mask_kind, tile_grid(*dense.shape[2:], tile), gen)
    active = tile_mask.reshape(-1).nonzero().reshape(-1)
    out = FeatureMap.from_nchw(cache)
    K.write_tiles(out, tile, active, K.conv_transpose2d_tiles(FeatureMap.from_nchw(x), weight, bias, win, g, tile, active))
    torch.testing.assert_close(out.nchw(), expected(dense, cache, tile_mask, tile), **TOL[torch.float64])


def test_conv_transpose_uneven_strides():
    gen = torch.Generator().manual_seed(5)
    x, weight = torch.randn(1, 3, 5, 6, generator=gen), torch.randn(3, 2, 3, 2, generator=gen)
    dense = F.conv_transpose2d(x, weight, None, (2, 3), (1, 0), (1, 2))
    win = TransposedWindow(5, 6, (3, 2), (2, 3), (1, 1), (1, 0), tuple(dense.shape[2:]))
    tile = win.tile_multiple()  # lcm(2, 3) = 6
    tile_mask = make_mask("random", tile_grid(*dense.shape[2:], tile), gen)
    active = tile_mask.reshape(-1).nonzero().reshape(-1)
    out = FeatureMap.from_nchw(torch.zeros_like(dense))
    K.write_tiles(out, tile, active, K.conv_transpose2d_tiles(FeatureMap.from_nchw(x), weight, None, win, 1, tile, active))
    torch.testing.assert_close(out.nchw(), expected(dense, torch.zeros_like(dense), tile_mask, tile))


def test_transposed_change_map_is_the_scatter_of_each_changed_cell():
    """An output cell is marked exactly when some changed input cell scatters into it."""
    from passrt.plan.masks import through_transposed_window

    gen = torch.Generator().manual_seed(9)
    for k, s, p, op, d in [(4, 2, 1, 0, 1), (3, 2, 1, 1, 1), (1, 3, 0, 2, 1), (3, 2, 2, 1, 2)]:
        changed = (torch.rand(1, 1, 6, 7, generator=gen) > 0.8).double()
        # Brute force: the output cells an impulse at each changed cell reaches.
        want = torch.zeros_like(F.conv_transpose2d(changed, torch.ones(1, 1, k, k, dtype=torch.float64),
                                                   None, s, p, op, 1, d))
        for i, j in changed[0, 0].nonzero().tolist():
            impulse = torch.zeros_like(changed)
            impulse[0, 0, i, j] = 1
            want = torch.maximum(want, (F.conv_transpose2d(impulse, torch.rand(1, 1, k, k, dtype=torch.float64) + 0.5,
                                                           None, s, p, op, 1, d) != 0).double())
        win = TransposedWindow(6, 7, (k, k), (s, s), (d, d), (p, p), tuple(want.shape[2:]))
        assert torch.equal(through_transposed_window(changed, win), want), (k, s, p, op, d)


MOVES = [
    ("zero pad", lambda t: F.pad(t, (1, 2, 0, 3))),
    ("constant pad", lambda t: F.pad(t, (2, 0, 1, 1), value=-0.5)),
    ("reflect pad", lambda t: F.pad(t, (2, 1, 1, 2), mode="reflect")),
    ("replicate pad", lambda t: F.pad(t, (0, 3, 2, 0), mode="replicate")),
    ("crop", lambda t: F.pad(t, (-1, 0, -2, -1))),
    ("channel slice", lambda t: t[:, 1:5]),
    ("strided slice", lambda t: t[:, ::2, 1::2, :-1]),
    ("pixel shuffle", lambda t: F.pixel_shuffle(t, 2)),
    ("pixel unshuffle", lambda t: F.pixel_unshuffle(t[:, :, :8, :10], 2)),
    ("chunk item", lambda t: t.chunk(2, 1)[1]),
    ("flip", lambda t: t.flip(2)),
    ("channel pad", lambda t: F.pad(t, (0, 0, 0, 0, 1, 2))),  # BlazePose-style: cells mix values and zeros
]


@pytest.mark.parametrize("name,fn", MOVES, ids=[m[0] for m in MOVES])
@pytest.mark.parametrize("tile", [1, 3])
def test_move_tiles_match_the_op(name, fn, tile):
    from passrt.kernels.tables import move_table

    gen = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    x = torch.randn(1, 8, 9, 11, generator=gen)
    dense = fn(x)
    table = move_table(fn, tuple(x.shape[1:]), tuple(dense.shape[1:]))
    # Spatial moves and channel slices keep one row index per cell (not one per value).
    assert (table.rows is not None) == (name not in ("pixel shuffle", "pixel unshuffle", "channel pad"))
    cache = torch.randn(dense.shape, generator=gen)
    tile_mask = make_mask("random", tile_grid(*dense.shape[2:], tile), gen)
    active = tile_mask.reshape(-1).nonzero().reshape(-1)
    out = FeatureMap.from_nchw(cache)
    K.write_tiles(out, tile, active, K.move_tiles(FeatureMap.from_nchw(x), table, *dense.shape[2:], tile, active))
    torch.testing.assert_close(out.nchw(), expected(dense, cache, tile_mask, tile), rtol=0, atol=0)
