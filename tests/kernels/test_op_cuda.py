"""The compiled passrt op on CUDA, float32 and float16, against passrt's PyTorch reference.

Same matrix as test_op_cpu.py (its cases and helpers), plus cases aimed at the CUDA kernel's
paths (sparse_conv2d.cu): every register-tile configuration (tiles of 1, 2, 3-4 and 5-8
cells per side), tiles split into 8x8-cell chunks (12, 16), more input channels than one
shared-memory stage (32), more output channels than one block (256), depthwise with many
channels, and windows too large for shared memory (the direct fallback).
"""

import pytest
import torch

from tests.kernels.test_op_cpu import ACT_FNS, CONV_CASES, EPILOGUE_CASES, case_id, run_case, seed_of

# No GPU: skip (a failure under PASSRT_REQUIRE_GPU=1). A GPU but a failed CUDA build: fail with
# nvcc's message (tests/conftest.py); status() alone cannot tell, it names CUDA either way.
pytestmark = [pytest.mark.cuda, pytest.mark.usefixtures("passrt_cuda_op")]

TOL = {torch.float32: dict(rtol=1e-4, atol=1e-4), torch.float16: dict(rtol=1e-2, atol=1e-2)}
DTYPES = [torch.float32, torch.float16]


def on_cuda(dtype):
    return dict(device="cuda", dtype=dtype, tol=TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CONV_CASES, ids=case_id)
@pytest.mark.parametrize("tile", [1, 2, 4])
@pytest.mark.parametrize("mask_kind", ["all-off", "all-on", "random", "edges"])
def test_sparse_conv2d_matches_reference(case, tile, mask_kind, dtype):
    run_case(case, tile, mask_kind, seed=seed_of(case, tile, mask_kind), **on_cuda(dtype))


KERNEL_PATH_CASES = [
    # kernel, stride, dilation, groups, padding, c_in, c_out, h, w, batch
    (1, 1, 1, 1, 0, 70, 40, 19, 21, 2),  # 1x1 over three 32-channel stages
    (1, 1, 1, 1, 0, 24, 300, 11, 13, 1),  # more output channels than a 256-channel block
    (3, 2, 1, 1, (0, 1, 0, 1), 3, 32, 33, 31, 1),  # MobileNetV2's first conv, TF SAME
    (3, 1, 1, 300, 1, 300, 300, 9, 11, 1),  # wide depthwise
    (3, 1, 60, 1, 60, 3, 4, 12, 12, 1),  # window too large for shared memory: direct kernel
    (3, 1, 60, 4, 60, 4, 4, 12, 12, 1),  # same, depthwise
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", KERNEL_PATH_CASES, ids=case_id)
@pytest.mark.parametrize("tile", [1, 2, 3, 5, 8, 12, 16])
def test_kernel_paths(case, tile, dtype):
    run_case(case, tile, "random", seed=seed_of(case, tile), activation="relu6", residual=True, **on_cuda(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", EPILOGUE_CASES, ids=case_id)
@pytest.mark.parametrize("activation", [a for a in ACT_FNS if a])
@pytest.mark.parametrize("residual", [False, True])
def test_fused_activation_and_residual(case, activation, residual, dtype):
    run_case(case, 2, "random", activation=activation, residual=residual, **on_cuda(dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_post_activation_after_residual(dtype):
    run_case(CONV_CASES[2], 4, "random", residual=True, post_activation="relu", **on_cuda(dtype))


def test_runs_on_the_current_stream_and_inside_a_cuda_graph():
    """Fixed grid, no allocation, no sync: the op can be captured and replayed."""
    x = torch.randn(1, 16, 24, 24, device="cuda")
    w = torch.randn(32, 16, 1, 1, device="cuda")
    out = torch.zeros(1, 32, 24, 24, device="cuda")
    mask = torch.zeros(1, 6, 6, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            torch.ops.passrt.sparse_conv2d(x, w, None, None, mask, out, [1, 1], [0, 0], [1, 1], 1, 4, 0, 0.0, 0)
    torch.cuda.current_stream().wait_stream(stream)
    mask[0, 2, 3] = 1.0  # the replay reads the mask's current contents
    graph.replay()
    torch.cuda.synchronize()
    dense = torch.nn.functional.conv2d(x, w)
    torch.testing.assert_close(out[..., 8:12, 12:16], dense[..., 8:12, 12:16], rtol=1e-4, atol=1e-4)
    out[..., 8:12, 12:16] = 0
    assert torch.count_nonzero(out) == 0, "only the active tile is written"


# ---- passrt::conv_tiles on CUDA (csrc/cuda/tiles_cuda.cu over kernels/tiles_nhwc.cu) -----------------
# Against the same op on CPU (itself tested against dense F.conv2d in test_tile_kernels_cpu.py), with the
# same rounded inputs: active cells within the dtype's tolerance, every other row bit for bit.
DEVICE = "cuda"  # set to "cpu" to check this test's own logic (shapes, active rows) on a machine without a GPU

TILE_CASES = [
    # kernel, stride, depthwise, c_in, c_out, h, w, follow channels (0: none)
    (1, 1, False, 40, 12, 13, 17, 0),
    (3, 2, False, 3, 32, 15, 18, 0),  # TF-SAME stem: padding (0, 0) top/left here, implied bottom/right
    (3, 1, False, 24, 70, 10, 9, 0),
    (3, 1, True, 33, 33, 11, 10, 0),
    (3, 2, True, 96, 96, 12, 14, 24),  # depthwise -> fused 1x1 through compact rows
    (1, 1, False, 16, 96, 9, 11, 20),  # 1x1 -> fused 1x1
]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", TILE_CASES, ids=lambda c: "k{}s{}{}-{}x{}-f{}".format(c[0], c[1], "dw" if c[2] else "",
                                                                                        c[3], c[4], c[7]))
@pytest.mark.parametrize("tile", [1, 3, 8])
@pytest.mark.parametrize("residual", ["none", "separate", "aliased"])
def test_conv_tiles_cuda_matches_cpu(case, tile, residual, dtype):
    k, s, dw, cin, cout, h, w, follow = case
    gen = torch.Generator().manual_seed(hash((case, tile, residual)) % 2 ** 31)
    ho, wo = -(-h // s), -(-w // s)  # TF SAME: stride 2 pads bottom/right only (implied), stride 1 symmetric
    pad = 0 if s > 1 else (k - 1) // 2
    cmid = cin if dw else cout
    cfin = follow or cmid
    r = lambda *shape, scale=1.0: (torch.randn(*shape, generator=gen) * scale).to(dtype).float()  # noqa: E731
    x = r(h * w + 2, cin)  # + a zero row and a spare row, as FeatureMap keeps
    weight = r(k * k, cin, scale=0.3) if dw else r(k * k * cin, cout, scale=0.3)
    bias = r(cmid)
    out = r(ho * wo + 2, cfin)
    res = r(ho * wo + 2, cfin) if residual == "separate" else None
    th, tw = -(-ho // tile), -(-wo // tile)
    tiles = (torch.rand(th * tw, generator=gen) < 0.4).nonzero().reshape(-1)
    fw, fb = (r(cmid, follow, scale=0.3), r(follow)) if follow else (None, None)

    def call(dev, dt):
        t = lambda v: None if v is None else v.to(dev, dt).contiguous()  # noqa: E731
        o = t(out)
        residual_arg = o if residual == "aliased" else t(res)
        first_res, follow_res = (None, residual_arg) if follow else (residual_arg, None)
        torch.ops.passrt.conv_tiles(t(x), t(weight), bias.to(dev), first_res, tiles.to(dev), o, [h, w], [ho, wo],
                                    [k, k], [s, s], [pad, pad], [1, 1], cin if dw else 1, tile, 2, 0.0, 0, t(fw),
                                    None if fb is None else fb.to(dev), follow_res, 0, 0.0, 1 if follow else 0)
        return o

    want = call("cpu", torch.float32)
    got = call(DEVICE, dtype).cpu().float()
    active = torch.zeros(ho * wo + 2, dtype=torch.bool)
    for t_id in tiles.tolist():
        y0, x0 = (t_id // tw) * tile, (t_id % tw) * tile
        for y in range(y0, min(y0 + tile, ho)):
            active[y * wo + x0: y * wo + min(x0 + tile, wo)] = True
    torch.testing.assert_close(got[active], want[active], **TOL[dtype])
    assert torch.equal(got[~active], out[~active]), "rows of inactive cells keep the cache, bit for bit"


def test_conv_tiles_is_captured_and_replayed_in_a_cuda_graph():
    """No host sync and launches sized by what the host knows: conv_tiles can be captured; a replay
    reads the tile ids' current contents (the cell list and its length are rebuilt on the device)."""
    torch.manual_seed(0)
    h = w = 16
    x = torch.randn(h * w + 2, 32, device="cuda", dtype=torch.float16)
    weight = torch.randn(32, 24, device="cuda", dtype=torch.float16) * 0.2
    out = torch.zeros(h * w + 2, 24, device="cuda", dtype=torch.float16)
    tiles = torch.tensor([0, 5], device="cuda")  # 4x4 tiles: a 4x4 grid

    def step():
        torch.ops.passrt.conv_tiles(x, weight, None, None, tiles, out, [h, w], [h, w], [1, 1], [1, 1], [0, 0],
                                    [1, 1], 1, 4, 0, 0.0, 0, None, None, None, 0, 0.0, 0)

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        step()  # warm-up outside the capture (allocator pools)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    out.zero_()
    tiles.copy_(torch.tensor([15, 10], device="cuda"))
    graph.replay()
    torch.cuda.synchronize()
    want = (x[: h * w].float() @ weight.float()).view(h, w, 24)
    got = out[: h * w].float().view(h, w, 24)
    for t in (15, 10):
        y, x0 = (t // 4) * 4, (t % 4) * 4
        torch.testing.assert_close(got[y:y + 4, x0:x0 + 4], want[y:y + 4, x0:x0 + 4], rtol=1e-2, atol=1e-2)
        got[y:y + 4, x0:x0 + 4] = 0
    assert torch.count_nonzero(got) == 0, "only the replayed tiles are written"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_conv_tiles_skips_the_inactive_ids_of_a_fixed_length_list(dtype):
    """The native executor on CUDA passes every tile of a grid, -1 for the inactive ones (compacting them
    would need the count on the host): the same cells in the same order as the compact list, so the same
    rows bit for bit, and the cache untouched elsewhere."""
    gen = torch.Generator().manual_seed(1)
    h, w, tile, cin, cout = 13, 17, 3, 16, 24
    th, tw = -(-h // tile), -(-w // tile)
    x = torch.randn(h * w + 2, cin, generator=gen).to("cuda", dtype)
    weight = (torch.randn(9 * cin, cout, generator=gen) * 0.2).to("cuda", dtype)
    bias = torch.randn(cout, generator=gen).cuda()
    cache = torch.randn(h * w + 2, cout, generator=gen).to("cuda", dtype)
    mask = torch.rand(th * tw, generator=gen) < 0.3
    lists = {"compact": mask.nonzero().reshape(-1), "padded": torch.where(mask, torch.arange(th * tw), -1)}
    outs = {}
    for name, ids in lists.items():
        outs[name] = cache.clone()
        torch.ops.passrt.conv_tiles(x, weight, bias, None, ids.cuda(), outs[name], [h, w], [h, w], [3, 3], [1, 1],
                                    [1, 1], [1, 1], 1, tile, 1, 0.0, 0, None, None, None, 0, 0.0, 0)
    assert lists["padded"].numel() == th * tw and int((lists["padded"] == -1).sum()) == th * tw - int(mask.sum())
    assert torch.equal(outs["padded"], outs["compact"])
    changed = (outs["padded"] != cache).any(1)
    assert 0 < int(changed.sum()) < h * w


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("ids", ["compact", "padded"])
def test_affine_tiles_cuda_matches_cpu(dtype, ids):
    """passrt::affine_tiles on CUDA (the input normalisation's native step) against the CPU op: active cells
    within the dtype's rounding, every other row bit for bit; a -1-padded id list like a compact one."""
    gen = torch.Generator().manual_seed(5)
    h, w, c, tile = 11, 14, 3, 4
    th, tw = -(-h // tile), -(-w // tile)
    x = torch.randn(h * w + 3, c, generator=gen).to(dtype).float()
    out = torch.randn(h * w + 3, c, generator=gen).to(dtype).float()
    scale, shift = torch.randn(c, generator=gen), torch.randn(c, generator=gen)
    mask = torch.rand(th * tw, generator=gen) < 0.5
    compact = mask.nonzero().reshape(-1)
    tiles = compact if ids == "compact" else torch.where(mask, torch.arange(th * tw), -1)
    want = out.clone()
    torch.ops.passrt.affine_tiles(x, scale, shift, compact, want, [h, w], tile)
    got = out.to("cuda", dtype)
    torch.ops.passrt.affine_tiles(x.to("cuda", dtype), scale.cuda(), shift.cuda(), tiles.cuda(), got, [h, w], tile)
    got = got.cpu().float()
    changed = (want != out).any(1)
    assert 0 < int(changed.sum()) < h * w
    torch.testing.assert_close(got[changed], want[changed], **TOL[dtype])
    assert torch.equal(got[~changed], out[~changed])
