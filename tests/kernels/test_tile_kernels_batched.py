"""Several streams in one call of the native tile kernels (batched execution across streams,
passrt/engine/batched.py): caches stacked (N, H*W + 3, C), stream b's tile ids offset by b x the
map's tile count. Each stream's slice against dense F.conv2d masked to that stream's own tiles (float64),
inactive cells bit-equal to its cache, and equal to the stream computed alone; the whole-plan TileProgram
on stacked caches; clear errors for stacks that do not match.
"""

import pytest
import torch
import torch.nn.functional as F

from passrt.kernels import native
from passrt.kernels.storage import FeatureMap
from passrt.kernels.tables import Window, tile_grid
from tests.kernels.test_op_cpu import make_mask, pads_of, seed_of
from tests.kernels.test_tile_kernels_cpu import SUPPORTED, apply, case_id, cells, dense

pytestmark = pytest.mark.usefixtures("passrt_op")

RELU6 = 2


def stacked_of(tensors):
    """NCHW tensors (1, C, H, W) of the streams as a stack and each stream's FeatureMap over its slice."""
    _, c, h, w = tensors[0].shape
    stack, maps = FeatureMap.stacked(len(tensors), c, h, w)
    for fm, t in zip(maps, tensors):
        fm.write_nchw(t.float())
    return stack, maps


class Stack:  # what the kernels' wrappers read of a value: its rows
    def __init__(self, rows):
        self.rows = rows


def ids_of(masks, grid):
    """The streams' active tile ids as ids into the stacked maps."""
    count = grid[0] * grid[1]
    return torch.cat([m.reshape(-1).nonzero().reshape(-1) + b * count for b, m in enumerate(masks)])


def streams_case(case, tile, n, seed, residual, follow):
    """Per stream: input, cache, residual, mask (stream 0 all-off, the last all-on, others random); shared weights."""
    k, s, d, g, p, cin, cout, h, w = case[:9]
    gen = torch.Generator().manual_seed(seed)
    f64 = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64).float().double()  # noqa: E731
    top, bottom, left, right = pads_of(p)
    ho, wo = (h + top + bottom - d * (k - 1) - 1) // s + 1, (w + left + right - d * (k - 1) - 1) // s + 1
    weight, bias = f64(cout, cin // g, k, k) / (cin // g * k * k) ** 0.5, f64(cout)
    c_out = follow or cout
    xs = [f64(1, cin, h, w) for _ in range(n)]
    caches = [f64(1, c_out, ho, wo) for _ in range(n)]
    res = [f64(1, cout, ho, wo) for _ in range(n)] if residual else None
    grid = tile_grid(ho, wo, tile)
    kinds = ["all-off"] + ["random"] * (n - 2) + ["all-on"]
    masks = [make_mask(kind, grid, gen)[0] for kind in kinds]
    w2 = b2 = None
    if follow:
        w2, b2 = f64(follow, cout, 1, 1) / cout ** 0.5, f64(follow)
    return weight, bias, xs, caches, res, masks, grid, (w2, b2)


@pytest.mark.parametrize("case", [SUPPORTED[0], SUPPORTED[2], SUPPORTED[3], SUPPORTED[5], SUPPORTED[6]], ids=case_id)
@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("tile", [1, 3, 4])
@pytest.mark.parametrize("residual,follow", [(False, None), (True, None), (False, 5)])
def test_stacked_streams_match_dense_per_stream(case, n, tile, residual, follow):
    k, s, d, g, p, cin, cout, h, w = case[:9]
    weight, bias, xs, caches, res, masks, grid, (w2, b2) = streams_case(case, tile, n, seed_of(case, n, tile, residual,
                                                                                                  follow), residual,
                                                                        follow)
    pads = pads_of(p)
    epi = native.Epilogue(RELU6, 0.1, "res" if residual else None, 0)
    conv = native.TileConv(native.kernel_weight(weight.float(), g), bias.float(),
                           Window(h, w, (k, k), (s, s), (d, d), pads), g, epi)
    if follow:
        conv.follow_weight, conv.follow_bias = w2.view(follow, cout).t().contiguous().float(), b2.float()
    x_stack, _ = stacked_of(xs)
    out_stack, outs = stacked_of(caches)
    values = {}
    if residual:
        values["res"] = Stack(stacked_of(res)[0])
    conv(Stack(x_stack), Stack(out_stack), tile, ids_of(masks, grid), values)
    for b in range(n):
        y = apply("relu6", dense(xs[b], weight, bias, pads, s, d, g))
        if residual:
            y = y + res[b]
        if follow:
            y = F.conv2d(y, w2, b2)
        active = cells(masks[b], tile, y.shape[2:])
        got = outs[b].nchw().double()
        torch.testing.assert_close(got, torch.where(active, y, caches[b]), rtol=1e-4, atol=1e-4)
        assert torch.equal(got[:, :, ~active], caches[b][:, :, ~active]), f"stream {b}: inactive tiles keep the cache"
        assert torch.all(outs[b].rows[outs[b].neg_inf_row] == float("-inf"))
        # the same stream alone: the same values (its GEMM rows are the same sums, in other company)
        alone = FeatureMap.from_nchw(caches[b].float())
        vals = {"res": FeatureMap.from_nchw(res[b].float())} if residual else {}
        conv(FeatureMap.from_nchw(xs[b].float()), alone, tile, masks[b].reshape(-1).nonzero().reshape(-1), vals)
        torch.testing.assert_close(outs[b].rows, alone.rows, rtol=1e-5, atol=1e-5)


def test_stacked_affine_and_program_equal_per_stream_calls():
    """TileProgram recorded on stacked caches (an affine map, then a conv reading it) = each stream alone."""
    n, c, h, w, tile = 3, 4, 10, 7, 2
    gen = torch.Generator().manual_seed(5)
    xs = [torch.randn(1, c, h, w, generator=gen) for _ in range(n)]
    caches = [torch.randn(1, 6, h, w, generator=gen) for _ in range(n)]
    grid = tile_grid(h, w, tile)
    masks = [torch.rand(*grid, generator=gen) > 0.5 for _ in range(n)]
    affine = native.TileAffine(torch.full((c,), 2.0), torch.full((c,), -1.0), (h, w))
    weight = torch.randn(6, c, 3, 3, generator=gen)
    conv = native.TileConv(native.kernel_weight(weight, 1), torch.randn(6, generator=gen),
                           Window(h, w, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)), 1, native.Epilogue())
    x_stack, _ = stacked_of(xs)
    mid_stack, mids = stacked_of([torch.zeros(1, c, h, w)] * n)
    out_stack, outs = stacked_of(caches)
    program = native.TileProgram()
    program.add_affine(affine, Stack(x_stack), Stack(mid_stack), tile)
    program.add_conv(conv, Stack(mid_stack), Stack(out_stack), tile, {})
    ids = ids_of(masks, grid)
    program([ids, ids])
    for b in range(n):
        x, mid, out = FeatureMap.from_nchw(xs[b]), FeatureMap(c, h, w), FeatureMap.from_nchw(caches[b])
        active = masks[b].reshape(-1).nonzero().reshape(-1)
        affine(x, mid, tile, active)
        conv(mid, out, tile, active, {})
        assert torch.equal(mids[b].rows, mid.rows)
        torch.testing.assert_close(outs[b].rows, out.rows, rtol=1e-5, atol=1e-5)


def test_stacks_that_do_not_match_are_refused():
    conv = native.TileConv(native.kernel_weight(torch.randn(4, 3, 3, 3), 1), None,
                           Window(6, 6, (3, 3), (1, 1), (1, 1), (1, 1, 1, 1)), 1, native.Epilogue(0, 0.1, "res", 0))
    x2, _ = stacked_of([torch.randn(1, 3, 6, 6)] * 2)
    out2, _ = stacked_of([torch.randn(1, 4, 6, 6)] * 2)
    out3, _ = stacked_of([torch.randn(1, 4, 6, 6)] * 3)
    res2 = Stack(torch.zeros(2, 40, 4))  # 36 cells, but not the output's 39 rows per stream
    tiles = torch.tensor([0, 36 + 35])
    with pytest.raises(RuntimeError, match=r"output must be \[2, >= 36, 4\]"):
        conv(Stack(x2), Stack(out3), 1, tiles, {"res": Stack(out2)})
    with pytest.raises(RuntimeError, match="rows per stream"):
        conv(Stack(x2), Stack(out2), 1, tiles, {"res": res2})
    with pytest.raises(RuntimeError, match=r"tile ids must be in 0 \.\. 71"):
        conv(Stack(x2), Stack(out2), 1, torch.tensor([72]), {"res": Stack(out2)})
    with pytest.raises(RuntimeError, match=r"must be \[>= 36, 4\] \(NHWC rows\)"):
        conv(Stack(x2[0]), Stack(out2), 1, tiles, {"res": Stack(out2)})
