"""Mask policies: what each one marks active."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import passrt
from passrt.plan import Plan
from passrt.plan.masks import cells_of
from passrt.policies import FrameContext, RegionDrop


def _region_drop_after(frame0, frame1, **params):
    policy = RegionDrop(**params)
    ctx = FrameContext(Plan([], "x", tuple(frame0.shape), None), {})
    assert policy.begin_frame(ctx, frame0, refresh=True)
    refresh = policy.begin_frame(ctx, frame1, refresh=False)
    return policy, ctx, refresh


def test_regiondrop_tiles_cover_every_cell_over_an_active_block():
    h, w = 96, 128
    x0 = torch.zeros(1, 3, h, w)
    x1 = x0.clone()
    x1[:, :, 40:45, 70:72] = 1.0  # one changed spot inside block (2, 4) of 16x16 blocks
    policy, _, refresh = _region_drop_after(x0, x1, threshold=0.5, block=16, margin=0)
    assert not refresh
    pixel_region = torch.zeros(1, 1, h, w)
    pixel_region[:, :, 32:48, 64:80] = 1
    for (lh, lw, tile) in [(48, 64, 4), (24, 32, 2), (12, 16, 2), (6, 8, 1), (3, 4, 1), (96, 128, 8)]:
        tiles = policy.masks.tiles(lh, lw, tile, policy.masks.blocks)[None, None]
        # Reference: the layer cells whose pixel footprint meets the region, OR-reduced to tiles.
        cells = F.adaptive_max_pool2d(pixel_region, (lh, lw))
        want = F.max_pool2d(cells, tile, tile, ceil_mode=True)
        assert torch.equal(tiles, want), (lh, lw, tile)


def test_regiondrop_margin_and_noise_robustness():
    x0 = torch.zeros(1, 3, 64, 64)
    x1 = x0.clone()
    x1[:, :, 20, 20] = 0.05  # below threshold: noise
    _, ctx, _ = _region_drop_after(x0, x1, threshold=0.08)
    assert ctx.changed.get("x") is None
    x1[:, :, 20:22, 20:22] = 1.0  # 4 pixels: enough with min_pixels=4, not with 5
    _, ctx, _ = _region_drop_after(x0, x1, threshold=0.08, min_pixels=5)
    assert ctx.changed.get("x") is None
    policy, ctx, _ = _region_drop_after(x0, x1, threshold=0.08, min_pixels=4, margin=1)
    assert ctx.changed.get("x") is not None
    region = cells_of(policy.masks.blocks[None, None], 16, 64, 64)
    assert region.sum() == 48 * 48  # block (1, 1) dilated by one block: 3x3 blocks of 16x16


def test_regiondrop_margin_is_a_cell_on_layers_coarser_than_a_block():
    from types import SimpleNamespace

    x0 = torch.zeros(1, 3, 256, 256)
    x1 = x0.clone()
    x1[:, :, 120:124, 120:124] = 1.0  # block (7, 7); with the margin blocks 6..8: pixels 96..143
    span = slice(96, 144)

    def cells(policy, n, tile):  # the step mask of an n x n layer, as 0/1 cells
        step = SimpleNamespace(shape=(1, n, n), tile=tile)
        return cells_of(policy.masks.step_mask(step, None), tile, n, n)[0, 0]

    for cell_margin in (True, False):
        policy, _, _ = _region_drop_after(x0, x1, threshold=0.5, min_pixels=4, margin=1, cell_margin=cell_margin)
        # A stride-32 layer: the cells over pixels 96..143 are 3 and 4, and one more either side with cell_margin.
        want = torch.zeros(8, 8)
        lo, hi = (2, 6) if cell_margin else (3, 5)
        want[lo:hi, lo:hi] = 1
        assert torch.equal(cells(policy, 8, 1), want), cell_margin
        # A stride-8 layer (cells finer than a block): the block margin alone, either way.
        want = torch.zeros(32, 32)
        want[span.start // 8:span.stop // 8, span.start // 8:span.stop // 8] = 1
        assert torch.equal(cells(policy, 32, 2), want), cell_margin


def test_regiondrop_reference_moves_only_in_the_region():
    x0 = torch.zeros(1, 3, 64, 64)
    x1 = torch.full_like(x0, 0.01)
    x1[:, :, 0:4, 0:4] = 1.0
    policy, _, _ = _region_drop_after(x0, x1, threshold=0.08, margin=0)
    assert torch.all(policy.ref[:, :, :16, :16] == x1[:, :, :16, :16])
    assert torch.all(policy.ref[:, :, 16:, 16:] == 0)


def test_layerwise_skips_small_feature_changes():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1)).eval()
    x = torch.rand(1, 3, 32, 32)
    loose = passrt.sparsify(net, "layerwise", threshold=0.0, feature_threshold=10.0, scene_cut=1.0)
    strict = passrt.sparsify(net, "layerwise", threshold=0.0, feature_threshold=0.0, scene_cut=1.0)
    for engine in (loose, strict):
        engine(x)
        y = x.clone()
        y[:, :, 10:12, 10:12] += 0.01
        out = engine(y)
    # With a huge feature threshold the second conv never recomputes; with 0 it is exact.
    assert loose.stats()["layers"]["2"]["mode"] == "skipped"
    assert strict.stats()["layers"]["2"]["mode"] == "sparse"
    torch.testing.assert_close(out, net(y), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("native", [False, True])
def test_exact_measures_the_noise_less_often_while_the_caches_are_stale(native, request, monkeypatch):
    """While the dense engine answers (the caches stale), exact's test is the same test (changed fraction, change
    map, reference) but a known noise level is measured on every 4th frame only; an unknown one on each."""
    from passrt.policies import exact, noise

    if native:
        request.getfixturevalue("passrt_op")
    calls = []
    measure = noise.frame_noise
    monkeypatch.setattr(noise, "frame_noise", lambda *a: calls.append(1) or measure(*a))
    gen = torch.Generator().manual_seed(5)
    plan = Plan([], "x", (1, 3, 80, 112), None)
    base = torch.rand(1, 3, 80, 112, generator=gen)
    frames = [(base + 0.004 * torch.randn(base.shape, generator=gen)).contiguous(memory_format=torch.channels_last)
              for _ in range(12)]
    for frame in frames[5:]:
        frame[:, :, 20:30, 40:75] += 0.5  # from frame 5: a change over a few blocks
    fresh, stale = exact.Exact(threshold="auto"), exact.Exact(threshold="auto")
    measured = ([], [])  # the frames each measured the noise on (from the third: two previous frames needed)
    for t, x in enumerate(frames):
        ctx = [FrameContext(plan, {}, native=native), FrameContext(plan, {}, native=native, caches_stale=t >= 3)]
        for policy, c, frames_measured in zip((fresh, stale), ctx, measured):
            before = len(calls)
            assert policy.begin_frame(c, x, t == 0) == (t == 0)
            if len(calls) > before:
                frames_measured.append(t)
        assert ctx[0].input_fraction == ctx[1].input_fraction and torch.equal(fresh.ref, stale.ref)
        if t == 5:
            assert torch.equal(ctx[0].changed["x"], ctx[1].changed["x"]) and 0 < ctx[1].input_fraction < 0.5
        elif t > 0:
            assert ctx[0].changed["x"] is None
    assert float(stale.level) > 0
    assert measured == (list(range(2, 12)), [2, 6, 10])  # stale from frame 3: its 4th, 8th ... frames


def test_regiondrop_in_place_rule_measures_the_noise_only_where_used(passrt_op, monkeypatch):
    """The eager rule (in passrt's kernels, states in place) skips the noise measurement on frames that cannot
    update the level (half the blocks changed or more, a refresh) once the level is known, and its states
    equal the tensor-op rule's, which measures every frame: static, moving, refresh and noisy frames."""
    from passrt.kernels import native
    from passrt.policies.regiondrop import RegionDrop

    gen = torch.Generator().manual_seed(3)
    base = torch.rand(1, 3, 96, 128, generator=gen)
    frames, refresh = [], []
    for t in range(14):
        x = base + 0.01 * torch.randn(base.shape, generator=gen)
        if t in (6, 7, 11):  # a pan over 55 % of the blocks: under the scene cut, over noise.STATIC
            x[:, :, :, :72] = torch.rand(1, 3, 96, 72, generator=gen)
        frames.append(x.clamp(0, 1).contiguous(memory_format=torch.channels_last))
        refresh.append(t in (0, 9))
    calls = []
    measure = native.block_rank_changes
    monkeypatch.setattr(native, "block_rank_changes", lambda *a: calls.append(1) or measure(*a))
    plan = Plan([], "x", (1, 3, 96, 128), None)
    policy = RegionDrop()
    source = policy.mask_source(plan)
    eager, ops = source.initial_states(frames[0], like_image=True), source.initial_states(frames[0])
    skipped = 0
    for x, r in zip(frames, refresh):
        flag = torch.full((1,), float(r))
        known, before = float(eager[3]) > 0, len(calls)
        eager = [s.clone() for s in source.begin(x, flag, eager, in_place=True)]
        eager_fraction, measured = float(source.fraction), len(calls) > before
        assert measured == (not known or (eager_fraction < 0.5 and not r))
        skipped += not measured
        ops = source.begin(x, flag, ops)
        assert float(source.fraction) == eager_fraction
        for a, b in zip(eager, ops):
            assert torch.equal(a, b)
    assert float(ops[3]) > 0 and skipped >= 4  # three pans (and the frames back) and a refresh
