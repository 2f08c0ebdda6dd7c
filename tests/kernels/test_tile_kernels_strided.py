"""The NHWC tile kernels' row strides (SparseConvParams in_stride / out_stride) through
torch.ops.passrt.conv_tiles, against dense F.conv2d masked to the active tiles.

The CPU twins of the CUDA kernels take the same strides the TensorRT plugin gives them for fp16 kHWC8
(rows of C rounded up to 8) and that make a grouped conv one groups-1 conv per channel slice. Here the
caches are views of wider rows ([cells, C] out of [cells, C + pad]) whose padding holds NaN: a kernel that
read it would spread NaN into the result, one that wrote it would change it. The matrix is the op's
(test_op_cpu.CONV_CASES: every kernel/stride/dilation/padding, grouped and depthwise-with-multiplier convs
included) x tiles x masks, plus residuals (separate and aliased to the output) and a fused 1x1.
"""

import pytest
import torch
import torch.nn.functional as F

from passrt.kernels import native
from tests.kernels.test_op_cpu import CONV_CASES, case_id, conv_inputs, pads_of, seed_of

pytestmark = pytest.mark.usefixtures("passrt_op")

PAD = 5  # extra elements per row: an odd count, so no row stride is a multiple of the channels by chance


def padded_rows(t: torch.Tensor, pad: int = PAD, device="cpu", dtype=torch.float32):
    """(1, C, H, W) -> (the [H*W, C] view the kernels get, its [H*W, C + pad] storage, padding NaN)."""
    c = t.shape[1]
    store = torch.full((t.shape[2] * t.shape[3], c + pad), float("nan"), device=device, dtype=dtype)
    view = store[:, :c]
    view.copy_(t[0].permute(1, 2, 0).reshape(-1, c).to(device=device, dtype=dtype))
    return view, store


def to_nchw(view: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return view.reshape(h, w, -1).permute(2, 0, 1).unsqueeze(0).cpu().double()


def active_cells(mask: torch.Tensor, tile: int, shape) -> torch.Tensor:
    return mask.repeat_interleave(tile, 0).repeat_interleave(tile, 1)[: shape[0], : shape[1]]


def dense(x, weight, bias, pads, stride, dilation, groups):
    top, bottom, left, right = pads
    return F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias, stride, 0, dilation, groups)


def conv_tiles(x_rows, weight_rows, bias, res_rows, tiles, out_rows, x_hw, out_hw, tile, case, follow=None):
    """One conv_tiles call: act leaky_relu (code 6, alpha 0.1); a follow (weight, bias, residual) 1x1 with relu."""
    k, s, d, g, p = case[:5]
    top, _, left, _ = pads_of(p)
    fw, fb, fr = follow if follow is not None else (None, None, None)
    torch.ops.passrt.conv_tiles(x_rows, weight_rows, bias, res_rows, tiles, out_rows, list(x_hw), list(out_hw),
                                [k, k], [s, s], [top, left], [d, d], g, tile, 6, 0.1, 0, fw, fb, fr,
                                1 if follow is not None else 0, 0.1, 0)


def run(case, tile, mask_kind, residual=None, seed=0, device="cpu", dtype=torch.float32):
    """residual: None, "separate" or "aliased" (the output's own rows). dtype: the caches' (fp16 on CUDA)."""
    k, s, d, g, p, cin, cout = case[:7]
    x, weight, bias, cache, mask, res = conv_inputs(case, tile, mask_kind, seed, residual == "separate")
    x, cache, mask = x[:1], cache[:1], mask[0]
    f32 = lambda t: t.to(dtype).double()  # noqa: E731 (the kernels see values rounded to dtype)
    x, weight, bias, cache = f32(x), f32(weight), f32(bias), f32(cache)
    res = f32(res[:1]) if res is not None else cache.clone() if residual == "aliased" else None
    y = F.leaky_relu(dense(x, weight, bias, pads_of(p), s, d, g), 0.1)  # act code 6 (leaky_relu, alpha 0.1)
    if res is not None:
        y = y + res
    ho, wo = y.shape[2:]
    on = dict(device=device, dtype=dtype)
    x_rows, x_store = padded_rows(x, **on)
    out_rows, out_store = padded_rows(cache, PAD + 2, **on)
    res_rows = out_rows if residual == "aliased" else padded_rows(res, PAD + 2, **on)[0] if res is not None else None
    tiles = mask.reshape(-1).nonzero().reshape(-1).to(device)
    x_before = x_store.clone()
    conv_tiles(x_rows, native.kernel_weight(weight.float(), g).to(**on), bias.float().to(device), res_rows, tiles,
               out_rows, x.shape[2:], (ho, wo), tile, case)
    active = active_cells(mask, tile, (ho, wo))
    got = to_nchw(out_rows, ho, wo)
    tol = 1e-4 if dtype == torch.float32 else 2e-2
    torch.testing.assert_close(got, torch.where(active, y, cache), rtol=tol, atol=tol)
    assert torch.equal(got[:, :, ~active], cache[:, :, ~active]), "inactive tiles keep the cache"
    assert torch.isnan(out_store[:, cout:]).all(), "the output rows' padding was written"
    assert torch.equal(x_store.nan_to_num(7.0), x_before.nan_to_num(7.0)), "the input was written"


@pytest.mark.parametrize("case", CONV_CASES, ids=case_id)
@pytest.mark.parametrize("tile", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("mask_kind", ["all-off", "all-on", "random", "edges"])
def test_padded_rows_match_dense(case, tile, mask_kind):
    run(case, tile, mask_kind, seed=seed_of(case, tile, mask_kind, "strided"))


@pytest.mark.parametrize("case", CONV_CASES, ids=case_id)
@pytest.mark.parametrize("residual", ["separate", "aliased"])
def test_padded_rows_with_residual(case, residual):
    run(case, 3, "random", residual=residual, seed=seed_of(case, residual, "strided"))


def test_12_channel_head_with_kHWC8_rows():
    """SSDLite's 12-channel heads as TensorRT's fp16 kHWC8 stores them: rows of 16 (here in fp32 on CPU)."""
    case = (3, 1, 1, 1, 1, 96, 12, 10, 13, 1)
    k, s, d, g, p, cin, cout = case[:7]
    x, weight, bias, cache, mask, _ = conv_inputs(case, 2, "random", 11)
    x, cache, mask = x[:1].float().double(), cache[:1].float().double(), mask[0]
    weight, bias = weight.float().double(), bias.float().double()
    y = F.leaky_relu(dense(x, weight, bias, pads_of(p), s, d, g), 0.1)
    x_rows, _ = padded_rows(x, 0)  # 96: already a multiple of 8
    out_rows, out_store = padded_rows(cache, 16 - cout)
    assert out_rows.stride(0) == 16
    conv_tiles(x_rows, native.kernel_weight(weight.float(), 1), bias.float(), None,
               mask.reshape(-1).nonzero().reshape(-1), out_rows, x.shape[2:], y.shape[2:], 2, case)
    active = active_cells(mask, 2, y.shape[2:])
    torch.testing.assert_close(to_nchw(out_rows, *y.shape[2:]), torch.where(active, y, cache), rtol=1e-4, atol=1e-4)
    assert torch.isnan(out_store[:, cout:]).all()


def test_fused_1x1_writes_padded_rows():
    """A depthwise conv -> 1x1 pair: the 1x1's output and residual rows padded, the depthwise input padded."""
    case = (3, 1, 1, 8, 1, 8, 8, 11, 9, 1)
    x, weight, bias, cache, mask, _ = conv_inputs(case, 2, "random", 5)
    x, mask = x[:1].float().double(), mask[0]
    weight, bias = weight.float().double(), bias.float().double()
    gen = torch.Generator().manual_seed(3)
    w2 = torch.randn(12, 8, 1, 1, generator=gen, dtype=torch.float64).float().double() / 3
    b2 = torch.randn(12, generator=gen, dtype=torch.float64).float().double()
    mid = F.leaky_relu(dense(x, weight, bias, (1, 1, 1, 1), 1, 1, 8), 0.1)
    cache = torch.randn(1, 12, *mid.shape[2:], generator=gen, dtype=torch.float64).float().double()
    res2 = torch.randn(1, 12, *mid.shape[2:], generator=gen, dtype=torch.float64).float().double()
    y = F.relu(F.conv2d(mid, w2, b2)) + res2
    x_rows, _ = padded_rows(x)
    out_rows, out_store = padded_rows(cache, 4)
    res_rows, _ = padded_rows(res2, 4)
    follow = (w2.view(12, 8).t().contiguous().float(), b2.float(), res_rows)
    conv_tiles(x_rows, native.kernel_weight(weight.float(), 8), bias.float(), None,
               mask.reshape(-1).nonzero().reshape(-1), out_rows, x.shape[2:], mid.shape[2:], 2, case,
               follow)
    active = active_cells(mask, 2, mid.shape[2:])
    torch.testing.assert_close(to_nchw(out_rows, *mid.shape[2:]), torch.where(active, y, cache), rtol=1e-4,
                               atol=1e-4)
    assert torch.isnan(out_store[:, 12:]).all()


def test_residual_rows_must_match_the_output():
    case = (1, 1, 1, 1, 0, 4, 6, 5, 5, 1)
    x, weight, bias, cache, mask, res = conv_inputs(case, 1, "all-on", 0, True)
    out_rows, _ = padded_rows(cache[:1], 2)
    res_rows, _ = padded_rows(res[:1], 3)
    with pytest.raises(RuntimeError, match="residual rows must be as far apart as the output's"):
        conv_tiles(padded_rows(x[:1])[0], native.kernel_weight(weight.float(), 1), bias.float(), res_rows,
                   torch.arange(25), out_rows, (5, 5), (5, 5), 1, case)


def test_grouped_weight_layout():
    """kernel_weight for a grouped conv: each group's (ky, kx, c) x C_out/g GEMM operand, stacked."""
    w = torch.randn(6, 2, 3, 3)
    got = native.kernel_weight(w, 3).view(3, 9 * 2, 2)
    for g in range(3):
        want = native.kernel_weight(w[2 * g:2 * g + 2], 1)
        assert torch.equal(got[g], want)
