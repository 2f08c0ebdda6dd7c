"""passrt's native NHWC tile kernels (torch.ops.passrt.conv_tiles, through passrt.kernels.native)
against dense F.conv2d masked to the active tiles.

Same matrix as the op's tests (test_op_cpu.py: kernel sizes, strides, dilations, paddings including
TF-SAME's asymmetric ones, odd sizes, tile sizes, masks all-off / all-on / random / edge tiles, fused
epilogues, residual aliased to the output), plus the fused 1x1 after a conv. The op must build here
(a broken build fails, tests/conftest.py); only a machine without a C++ compiler skips.
"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings, strategies as st

from passrt import contract
from passrt.kernels import native
from passrt.kernels.storage import FeatureMap
from passrt.kernels.tables import Window, tile_grid
from tests.kernels.test_op_cpu import ACT_FNS, CONV_CASES, case_id, conv_inputs, make_mask, pads_of, seed_of

pytestmark = pytest.mark.usefixtures("passrt_op")

SUPPORTED = [c for c in CONV_CASES if c[3] == 1 or (c[3] == c[5] == c[6])]  # groups 1 or depthwise
ALPHA = 0.1


def act_code(name):
    return contract.ACTIVATION_CODES[name]


def apply(name, v):
    return v if name is None else (F.leaky_relu(v, ALPHA) if name == "leaky_relu" else ACT_FNS[name](v))


def dense(x, weight, bias, pads, stride, dilation, groups):
    top, bottom, left, right = pads
    return F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias, stride, 0, dilation, groups)


def cells(mask, tile, shape):
    return mask.repeat_interleave(tile, 0).repeat_interleave(tile, 1)[: shape[0], : shape[1]]


def run(case, tile, mask_kind, *, act=None, post=None, residual=False, alias=False, follow=None, seed=0):
    """Native kernels (float32) vs dense float64 convs masked to the active tiles."""
    k, s, d, g, p, cin, cout = case[:7]
    x, weight, bias, cache, mask, res = conv_inputs(case, tile, mask_kind, seed, residual)
    f32 = lambda t: t.float().double() if t is not None else None  # noqa: E731 (inputs rounded to float32)
    x, weight, bias, cache, mask = f32(x[:1]), f32(weight), f32(bias), f32(cache[:1]), mask[0]
    res = f32(res[:1]) if res is not None else None
    pads = pads_of(p)
    y = apply(act, dense(x, weight, bias, pads, s, d, g))
    if alias:
        res = cache.clone()
    y = apply(post, y + res if res is not None else y)
    values = {}
    epi = native.Epilogue(act_code(act), ALPHA, None, act_code(post))
    if res is not None and not alias:
        values["res"] = FeatureMap.from_nchw(res.float())
        epi = native.Epilogue(epi.act, ALPHA, "res", epi.post)
    conv = native.TileConv(native.kernel_weight(weight.float(), g), bias.float(), Window(
        x.shape[2], x.shape[3], (k, k), (s, s), (d, d), pads), g, epi)
    if follow is not None:  # a 1x1 after the conv: (channels, act, residual)
        c2, act2, res2 = follow
        gen = torch.Generator().manual_seed(seed + 1)
        w2 = f32(torch.randn(c2, cout, 1, 1, generator=gen, dtype=torch.float64) / cout ** 0.5)
        b2 = f32(torch.randn(c2, generator=gen, dtype=torch.float64))
        y = apply(act2, F.conv2d(y, w2, b2))
        conv.follow_weight, conv.follow_bias = w2.view(c2, cout).t().contiguous().float(), b2.float()
        conv.follow_epilogue = native.Epilogue(act_code(act2), ALPHA, "res2" if res2 else None, 0)
        if res2:
            r2 = f32(torch.randn(1, c2, *y.shape[2:], generator=gen, dtype=torch.float64))
            values["res2"] = FeatureMap.from_nchw(r2.float())
            y = y + r2
        cache = f32(torch.randn(1, c2, *y.shape[2:], generator=gen, dtype=torch.float64))
    out = FeatureMap.from_nchw(cache.float())
    if alias:
        values["out"] = out
        conv.epilogue = native.Epilogue(epi.act, ALPHA, "out", epi.post)
    conv(FeatureMap.from_nchw(x.float()), out, tile, mask.reshape(-1).nonzero().reshape(-1), values)
    active = cells(mask, tile, y.shape[2:])
    want = torch.where(active, y, cache)
    torch.testing.assert_close(out.nchw().double(), want, rtol=1e-4, atol=1e-4)
    assert torch.equal(out.nchw().double()[:, :, ~active], cache[:, :, ~active]), "inactive tiles keep the cache"
    assert torch.all(out.rows[out.zero_row] == 0) and torch.all(out.rows[out.neg_inf_row] == float("-inf"))


@pytest.mark.parametrize("case", SUPPORTED, ids=case_id)
@pytest.mark.parametrize("tile", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("mask_kind", ["all-off", "all-on", "random", "edges"])
def test_conv_tiles_matches_dense(case, tile, mask_kind):
    run(case, tile, mask_kind, seed=seed_of(case, tile, mask_kind, "tiles"))


@pytest.mark.parametrize("case", [SUPPORTED[0], SUPPORTED[3], SUPPORTED[5], SUPPORTED[6]], ids=case_id)
@pytest.mark.parametrize("act", [a for a in ACT_FNS if a])
@pytest.mark.parametrize("residual", [False, True])
def test_fused_epilogue(case, act, residual):
    run(case, 2, "random", act=act, residual=residual, seed=seed_of(case, act, residual))


@pytest.mark.parametrize("post", ["relu", "relu6"])
def test_post_activation_after_residual(post):
    run(SUPPORTED[2], 4, "random", residual=True, post=post)


def test_residual_may_be_the_output():
    run(SUPPORTED[0], 4, "random", act="relu", alias=True)


@pytest.mark.parametrize("case", [SUPPORTED[0], SUPPORTED[5], SUPPORTED[6]], ids=case_id)
@pytest.mark.parametrize("follow", [(12, None, False), (5, "relu6", True), (3, "hardswish", False)])
@pytest.mark.parametrize("tile", [1, 3])
def test_fused_1x1_after_the_conv(case, follow, tile):
    """MobileNetV2's depthwise -> projection (+ residual) in one call."""
    run(case, tile, "random", act="relu6", follow=follow, seed=seed_of(case, follow, tile))


@settings(max_examples=40, deadline=None)
@given(k=st.sampled_from([1, 2, 3, 5]), s=st.integers(1, 3), d=st.integers(1, 2), depthwise=st.booleans(),
       cin=st.integers(1, 9), cout=st.integers(1, 9), h=st.integers(1, 19), w=st.integers(1, 19),
       pads=st.tuples(*[st.integers(0, 2)] * 4), tile=st.integers(1, 5), seed=st.integers(0, 2 ** 16))
def test_random_geometry(k, s, d, depthwise, cin, cout, h, w, pads, tile, seed):
    extent = d * (k - 1) + 1
    pads = tuple(min(v, extent - 1) for v in pads)  # bottom/right padding inside the window, as the kernels take it
    if h + pads[0] + pads[1] < extent or w + pads[2] + pads[3] < extent:
        return
    g = cin if depthwise else 1
    cout = cin if depthwise else cout
    run((k, s, d, g, pads, cin, cout, h, w, 1), tile, "random", act="relu", seed=seed)


def test_unsupported_convs_are_refused():
    """Grouped convs that are not depthwise, and depthwise with a multiplier, stay with the reference."""
    assert not native.supports(torch.zeros(6, 2, 3, 3), 3)
    assert not native.supports(torch.zeros(6, 1, 3, 3), 3)  # multiplier 2
    assert not native.supports(torch.zeros(4, 4, 3, 3, dtype=torch.float64), 1)
    assert native.supports(torch.zeros(4, 1, 3, 3), 4) and native.supports(torch.zeros(4, 4, 1, 1), 1)


def test_clear_errors():
    x, out = FeatureMap(4, 8, 8), FeatureMap(6, 8, 8)
    w = native.kernel_weight(torch.randn(6, 4, 3, 3), 1)
    op = torch.ops.passrt.conv_tiles

    def call(**kw):
        a = dict(input=x.rows, weight=w, tiles=torch.tensor([0, 3]), output=out.rows, groups=1, act=0)
        a.update(kw)
        op(a["input"], a["weight"], None, None, a["tiles"], a["output"], [8, 8], [8, 8], [3, 3], [1, 1], [1, 1],
           [1, 1], a["groups"], 4, a["act"], 0.0, 0, None, None, None, 0, 0.0, 0)

    call()  # valid
    with pytest.raises(RuntimeError, match="tile ids must be in 0 .. 3"):
        call(tiles=torch.tensor([4]))
    with pytest.raises(RuntimeError, match="tiles must be a contiguous 1-D int64"):
        call(tiles=torch.tensor([0], dtype=torch.int32))
    with pytest.raises(RuntimeError, match="weight must be"):
        call(weight=w[:-1])
    with pytest.raises(RuntimeError, match="output must be"):
        call(output=FeatureMap(5, 8, 8).rows)
    with pytest.raises(RuntimeError, match="not an activation code"):
        call(act=9)
    with pytest.raises(RuntimeError, match=r"weight must be \[36, 4\]"):  # grouped: [g * taps * C_in/g, C_out/g]
        call(groups=2, weight=torch.zeros(9, 4))


def test_fake_kernel_for_compile_and_export():
    x, out = FeatureMap(4, 8, 8), FeatureMap(4, 8, 8)
    w = native.kernel_weight(torch.randn(4, 1, 3, 3), 4)
    args = (x.rows, w, torch.zeros(4), None, torch.tensor([1, 2]), out.rows, [8, 8], [8, 8], [3, 3], [1, 1], [1, 1],
            [1, 1], 4, 4, 2, 0.0, 0, None, None, None, 0, 0.0, 0)
    torch.library.opcheck(torch.ops.passrt.conv_tiles.default, args)


def test_tile_grid_used_by_the_tests():
    assert tile_grid(9, 13, 4) == (3, 4) and make_mask("edges", (2, 2), None)[0].sum() == 3


@pytest.mark.parametrize("case", [(3, 1, 1, 64, 1, 64, 64, 48, 40, 1), (1, 1, 1, 1, 0, 48, 96, 40, 48, 1),
                                  (3, 2, 1, 1, 1, 24, 32, 61, 47, 1)], ids=case_id)
def test_large_maps_split_across_threads(case):
    """Maps large enough that every stage is split into several tasks (one per thread or more)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(max(threads, 2))
    try:
        run(case, 2, "random", act="relu6", residual=True, follow=(16, None, True), seed=seed_of(case, "threads"))
    finally:
        torch.set_num_threads(threads)


# ---- frame-level change kernels: each equal to the tensor ops of the rule it speeds up -------------

def frames(shape, seed, channels_last):
    gen = torch.Generator().manual_seed(seed)
    a, b = (torch.rand(*shape, generator=gen) for _ in range(2))
    b = torch.where(torch.rand(*shape, generator=gen) < 0.5, a + 0.01 * torch.randn(*shape, generator=gen), b)
    if channels_last:
        a, b = (t.contiguous(memory_format=torch.channels_last) for t in (a, b))
    return a, b


@pytest.mark.parametrize("shape", [(1, 3, 64, 96), (1, 3, 50, 37), (1, 1, 16, 16), (1, 4, 33, 80)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("block,rank", [(16, 8), (8, 3), (16, 300)])
def test_block_rank_changes_equal_the_noise_statistic(shape, channels_last, block, rank):
    """Against each of two other frames, one of them in the other memory layout (a mixed pair)."""
    from passrt.policies.noise import _block_statistic

    if min(shape[2:]) < block:
        return
    a, b = frames(shape, seed_of(shape, block, rank), channels_last and shape[1] in (3, 4))
    c = (b + 0.02 * torch.randn(shape, generator=torch.Generator().manual_seed(5))).contiguous(
        memory_format=torch.contiguous_format if channels_last else torch.channels_last)
    want = torch.stack([_block_statistic(a, b, block, rank), _block_statistic(a, c, block, rank)])
    assert torch.equal(native.block_rank_changes(a, [b, c], block, rank), want)


@pytest.mark.parametrize("shape", [(1, 3, 64, 96), (1, 3, 50, 37), (1, 1, 7, 5), (1, 4, 33, 80)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("block", [16, 5])
@pytest.mark.parametrize("limit", [0.0, 0.004, 0.3])
def test_block_change_counts_equal_the_pooled_change_test(shape, channels_last, block, limit):
    from passrt.plan.masks import pixel_change

    a, b = frames(shape, seed_of(shape, block, limit), channels_last and shape[1] in (3, 4))
    want = F.avg_pool2d((pixel_change(a, b) > limit).float(), block, block, ceil_mode=True) * block ** 2
    assert torch.equal(native.block_change_counts(a, b, limit, block), want)


@pytest.mark.parametrize("shape", [(1, 3, 64, 96), (1, 3, 50, 37), (1, 1, 7, 5), (1, 4, 33, 80)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("block", [16, 5])
def test_block_features_equal_the_common_gates_tensor_ops(shape, channels_last, block):
    """PASS's common gate's per-pixel pass: counts above each limit exactly, means and max to float rounding."""
    from passrt.policies.common_gate import block_statistics

    a, b = frames(shape, seed_of(shape, block, 1), channels_last and shape[1] in (3, 4))
    limits = [0.0, 0.004, 0.05, 0.3]
    want = block_statistics(a, b, limits, block)
    got = native.block_features(a, b, limits, block)
    assert got.shape == want.shape == (1, len(limits) + 2 + 2 * shape[1], -(-shape[2] // block), -(-shape[3] // block))
    k = len(limits)
    assert torch.equal(got[:, :k] * block ** 2, want[:, :k] * block ** 2)  # same counts (pooling divides exactly)
    assert torch.equal(got[:, k + 1], want[:, k + 1])  # max
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 3, 64, 96), (1, 3, 50, 37), (1, 1, 7, 5), (1, 4, 40, 70)])
@pytest.mark.parametrize("layouts", [(False, False), (True, True), (True, False), (False, True)])
def test_copy_blocks_equals_lerp_on_block_cells(shape, layouts):
    """The marked blocks copied, runs of adjacent blocks included, in each layout and mixed layouts."""
    from passrt.plan.masks import cells_of

    block = 16
    a, b = frames(shape, seed_of(shape, "copy"), False)
    a, b = (t.contiguous(memory_format=torch.channels_last) if last else t for t, last in zip((a, b), layouts))
    mask = (torch.rand(1, 1, -(-shape[2] // block), -(-shape[3] // block), generator=torch.Generator().manual_seed(1))
            > 0.5).float()
    want = torch.lerp(b, a, cells_of(mask, block, *shape[2:]))
    got = native.copy_blocks_(b.clone(), a, mask, block)
    assert torch.equal(got, want)


@pytest.mark.parametrize("shape", [(1, 3, 64, 96), (1, 3, 50, 37), (1, 1, 7, 5), (1, 4, 33, 80)])
@pytest.mark.parametrize("layouts", [(False, False), (True, True), (True, False)])
@pytest.mark.parametrize("limit", [0.0, 0.004, 0.3])
def test_pixel_changes_equal_exacts_change_test(shape, layouts, limit):
    """The change map and the reference moved at the changed pixels (mixed layouts too)."""
    from passrt.plan.masks import pixel_change

    a, ref = frames(shape, seed_of(shape, "pixels", limit), False)
    a, ref = (t.contiguous(memory_format=torch.channels_last) if last and shape[1] in (3, 4) else t
              for t, last in zip((a, ref), layouts))
    want = (pixel_change(a, ref) > limit).float()
    want_ref = torch.where(want.bool(), a, ref)
    got_ref = ref.clone()
    got = native.pixel_changes_(got_ref, a, limit)
    assert 0 < want.mean() < 1 or limit == 0.0
    assert torch.equal(got, want) and torch.equal(got_ref, want_ref)


@pytest.mark.parametrize("cells,channels", [(1, 1), (77, 3), (4000, 24), (300, 96)])
@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_row_changes_equal_layerwises_test(cells, channels, share):
    """The listed rows' change test against the reference and its update, as layerwise's tensor ops do it."""
    gen = torch.Generator().manual_seed(cells * channels)
    ref = torch.rand(cells + 3, channels, generator=gen)  # + the row cache's three special rows
    src = torch.where(torch.rand(cells + 3, 1, generator=gen) < 0.5, ref + 0.02 * torch.randn(ref.shape, generator=gen),
                      torch.rand(ref.shape, generator=gen))
    rows = torch.nonzero(torch.rand(cells, generator=gen) < share).reshape(-1)
    threshold = 0.05
    diff = (src[rows] - ref[rows]).abs().amax(1)
    flagged = rows[diff > threshold]
    want_ref = ref.clone()
    want_ref[flagged] = src[flagged]
    want = torch.zeros(cells)
    want[flagged] = 1.0
    got_ref = ref.clone()
    got = native.row_changes_(got_ref, src, rows, threshold, cells)
    assert torch.equal(got, want) and torch.equal(got_ref, want_ref)


def test_frame_ops_clear_errors():
    a = torch.rand(1, 3, 32, 32)
    with pytest.raises(RuntimeError, match="smaller than a block"):
        native.block_rank_changes(a, [a], 64, 8)
    with pytest.raises(RuntimeError, match="has shape"):
        native.block_change_counts(a, torch.rand(1, 3, 32, 31), 0.1, 16)
    with pytest.raises(RuntimeError, match="float32 CPU tensor"):
        native.block_change_counts(a.double(), a.double(), 0.1, 16)
    with pytest.raises(RuntimeError, match="mask must be"):
        native.copy_blocks_(a.clone(), a, torch.ones(3), 16)
    with pytest.raises(RuntimeError, match="another tensor"):
        native.pixel_changes_(a, a, 0.1)
    rows = torch.rand(10, 4)
    with pytest.raises(RuntimeError, match="is not a cell"):
        native.row_changes_(rows.clone(), rows, torch.tensor([8]), 0.1, 7)


@pytest.mark.parametrize("channels", [1, 3, 16])
@pytest.mark.parametrize("tile", [1, 3, 8])
@pytest.mark.parametrize("mask_kind", ["all-off", "all-on", "random", "edges"])
@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("form", ["scale", "shift", "both"])
def test_affine_tiles_match_the_ops_on_active_tiles(channels, tile, mask_kind, in_place, form):
    """affine_tiles = x * scale + shift on the cells of the active tiles (bit for bit when one of the two
    is the identity, as for the steps the engine gives it); the other cells keep the cache."""
    gen = torch.Generator().manual_seed(channels * 100 + tile)
    h, w = 13, 21
    x = torch.randn(1, channels, h, w, generator=gen)
    scale, shift = torch.randn(channels, generator=gen), torch.randn(channels, generator=gen)
    if form == "scale":
        shift = torch.zeros(channels)
    elif form == "shift":
        scale = torch.ones(channels)
    grid = tile_grid(h, w, tile)
    mask = make_mask(mask_kind, grid, gen)[0]
    cache = torch.randn(1, channels, h, w, generator=gen)
    src = FeatureMap.from_nchw(x)
    out = src if in_place else FeatureMap.from_nchw(cache)
    if in_place:
        cache = x.clone()
    affine = native.TileAffine(scale.contiguous(), shift.contiguous(), (h, w))
    affine(src, out, tile, mask.reshape(-1).nonzero().reshape(-1))
    active = cells(mask, tile, (h, w))
    want = torch.where(active, x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1), cache)
    if form == "both":  # the kernel may fuse the multiply-add (one rounding instead of two)
        torch.testing.assert_close(out.nchw(), want, rtol=1e-6, atol=1e-6)
        assert torch.equal(out.nchw()[:, :, ~active], cache[:, :, ~active])
    else:
        assert torch.equal(out.nchw(), want)


def test_affine_tiles_clear_errors():
    x = FeatureMap(3, 4, 4)
    ones = torch.ones(3)
    with pytest.raises(RuntimeError, match="tile id is outside"):
        native.TileAffine(ones, ones, (4, 4))(x, x, 2, torch.tensor([4]))
    with pytest.raises(RuntimeError, match="scale must be"):
        native.TileAffine(torch.ones(2), ones, (4, 4))(x, x, 2, torch.tensor([0]))
