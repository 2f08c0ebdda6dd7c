"""The compiled passrt op on CPU (torch.ops.passrt.*) against passrt's PyTorch reference.

Expected side: :func:`passrt.kernels.reference.sparse_conv2d` (image by image, so batches
work too). The op must build here: if it cannot, every test fails with the compiler's
message (only a machine without a C++ compiler skips), never passes vacuously.
test_op_cuda.py runs the same matrix on CUDA and imports its cases and helpers from here.
"""

import math
import zlib

import pytest
import torch
import torch.nn.functional as F

from passrt.kernels import extension
from passrt.kernels.reference import sparse_conv2d
from passrt.kernels.tables import tile_grid


# The op must build wherever a C++ compiler exists: a broken build fails every test here with the
# compiler's message (tests/conftest.py); only a machine without a compiler skips.
pytestmark = pytest.mark.usefixtures("passrt_op")


ACT_FNS = {None: None, "relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish, "silu": F.silu,
           "sigmoid": torch.sigmoid, "leaky_relu": lambda v: F.leaky_relu(v, 0.1)}

CONV_CASES = [
    # kernel, stride, dilation, groups, padding (int or top, bottom, left, right), c_in, c_out, h, w, batch
    (1, 1, 1, 1, 0, 8, 16, 12, 12, 1),
    (1, 2, 1, 1, 0, 6, 4, 13, 9, 2),
    (3, 1, 1, 1, 1, 5, 7, 15, 11, 1),
    (3, 2, 1, 1, 1, 4, 8, 17, 23, 1),
    (3, 1, 2, 1, 2, 4, 4, 14, 10, 2),
    (3, 1, 1, 8, 1, 8, 8, 16, 16, 1),  # depthwise
    (3, 2, 1, 6, (0, 1, 0, 1), 6, 6, 16, 12, 1),  # depthwise, TF-SAME asymmetric
    (3, 2, 2, 3, (2, 1, 1, 2), 3, 6, 15, 13, 1),  # depthwise with multiplier 2, dilated, asymmetric
    (3, 1, 1, 2, 1, 4, 6, 9, 13, 1),  # grouped
    (5, 2, 1, 1, 2, 3, 5, 21, 19, 1),
    (5, 1, 2, 3, (4, 3, 2, 5), 6, 3, 19, 17, 1),  # grouped, dilated, asymmetric
    (1, 1, 1, 4, 0, 8, 8, 7, 7, 1),  # grouped 1x1
    (3, 2, 1, 1, 0, 2, 3, 11, 14, 1),  # no padding
]


def seed_of(*key):
    return zlib.crc32(repr(key).encode())  # stable across runs, unlike hash()


def case_id(c):
    return "k{}s{}d{}g{}p{}_{}x{}n{}".format(*c[:5], *c[7:])


def pads_of(p):
    return (p, p, p, p) if isinstance(p, int) else tuple(p)


def make_mask(kind, grid, gen, batch=1):
    ht, wt = grid
    if kind == "all-off":
        return torch.zeros(batch, ht, wt, dtype=torch.bool)
    if kind == "all-on":
        return torch.ones(batch, ht, wt, dtype=torch.bool)
    if kind == "edges":  # last row and column: the tiles that overhang the map
        m = torch.zeros(batch, ht, wt, dtype=torch.bool)
        m[:, -1, :] = True
        m[:, :, -1] = True
        return m
    return torch.rand(batch, ht, wt, generator=gen) > 0.6


def conv_inputs(case, tile, mask_kind, seed, residual=False):
    """Inputs of one case (float64 on CPU); the weight is scaled so outputs are about unit size."""
    k, s, d, g, p, cin, cout, h, w, n = case
    gen = torch.Generator().manual_seed(seed)
    top, bottom, left, right = pads_of(p)
    ho = (h + top + bottom - d * (k - 1) - 1) // s + 1
    wo = (w + left + right - d * (k - 1) - 1) // s + 1
    x = torch.randn(n, cin, h, w, generator=gen, dtype=torch.float64)
    weight = torch.randn(cout, cin // g, k, k, generator=gen, dtype=torch.float64) / math.sqrt(cin // g * k * k)
    bias = torch.randn(cout, generator=gen, dtype=torch.float64)
    cache = torch.randn(n, cout, ho, wo, generator=gen, dtype=torch.float64)
    res = torch.randn(n, cout, ho, wo, generator=gen, dtype=torch.float64) if residual else None
    mask = make_mask(mask_kind, tile_grid(ho, wo, tile), gen, n)
    return x, weight, bias, cache, mask, res


def expected(x, weight, bias, cache, mask, *, stride, padding, dilation, groups, tile, activation=None,
             residual=None, post_activation=None):
    """The reference, image by image; post_activation applied to the recomputed tiles only."""
    out = cache.clone()
    for i in range(x.shape[0]):
        sparse_conv2d(x[i:i + 1], weight, bias, out[i:i + 1], mask[i], stride=stride, padding=padding,
                      dilation=dilation, groups=groups, tile=tile, activation=ACT_FNS[activation],
                      residual=None if residual is None else residual[i:i + 1])
    if post_activation is not None:
        cells = mask.repeat_interleave(tile, 1).repeat_interleave(tile, 2)[:, :out.shape[2], :out.shape[3]]
        out = torch.where(cells.unsqueeze(1), ACT_FNS[post_activation](out), cache)
    return out


def run_case(case, tile, mask_kind, *, device, dtype, tol, activation=None, post_activation=None,
             residual=False, seed=0):
    """Op on (device, dtype) vs the float64 reference on the same (rounded) inputs."""
    k, s, d, g, p = case[:5]
    x, weight, bias, cache, mask, res = conv_inputs(case, tile, mask_kind, seed, residual)
    x, weight, bias, cache = (t.to(dtype).double() for t in (x, weight, bias, cache))  # round to dtype
    res = res.to(dtype).double() if res is not None else None
    kw = dict(stride=s, padding=p, dilation=d, groups=g, tile=tile, activation=activation, residual=res)
    want = expected(x, weight, bias, cache, mask, post_activation=post_activation, **kw)
    on = lambda t: t.to(device=device, dtype=dtype) if t is not None else None  # noqa: E731
    kw["residual"] = on(res)
    got = extension.sparse_conv2d_op(on(x), on(weight), on(bias), on(cache), mask.to(device), act_alpha=0.1,
                                     post_activation=post_activation, **kw)
    torch.testing.assert_close(got.double().cpu(), want, **tol)
    untouched = ~mask.repeat_interleave(tile, 1).repeat_interleave(tile, 2)[:, :want.shape[2], :want.shape[3]]
    assert torch.equal(got.cpu()[untouched.unsqueeze(1).expand_as(got)].double(),
                       cache[untouched.unsqueeze(1).expand_as(cache)]), "inactive tiles must keep the cache"


CPU = dict(device="cpu", dtype=torch.float32, tol=dict(rtol=1e-4, atol=1e-4))


@pytest.mark.parametrize("case", CONV_CASES, ids=case_id)
@pytest.mark.parametrize("tile", [1, 2, 4])
@pytest.mark.parametrize("mask_kind", ["all-off", "all-on", "random", "edges"])
def test_sparse_conv2d_matches_reference(case, tile, mask_kind):
    run_case(case, tile, mask_kind, seed=seed_of(case, tile, mask_kind), **CPU)


EPILOGUE_CASES = [CONV_CASES[0], CONV_CASES[3], CONV_CASES[6], CONV_CASES[10]]


@pytest.mark.parametrize("case", EPILOGUE_CASES, ids=case_id)
@pytest.mark.parametrize("activation", [a for a in ACT_FNS if a])
@pytest.mark.parametrize("residual", [False, True])
def test_fused_activation_and_residual(case, activation, residual):
    run_case(case, 2, "random", activation=activation, residual=residual, **CPU)


@pytest.mark.parametrize("post", ["relu", "relu6"])
def test_post_activation_after_residual(post):
    """ResNet-style conv -> +residual -> ReLU."""
    run_case(CONV_CASES[2], 4, "random", residual=True, post_activation=post, **CPU)


def test_residual_may_be_the_output():
    case = CONV_CASES[0]
    x, weight, bias, cache, mask, _ = (t.float() if t is not None else None for t in conv_inputs(case, 4, "random", 5))
    want = expected(x, weight, bias, cache, mask, stride=1, padding=0, dilation=1, groups=1, tile=4,
                    residual=cache.clone())
    out = cache.clone()
    extension.sparse_conv2d_op(x, weight, bias, out, mask, tile=4, residual=out)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)


def test_clear_errors():
    x, w = torch.randn(1, 4, 8, 8), torch.randn(4, 4, 3, 3)
    out, mask = torch.zeros(1, 4, 8, 8), torch.ones(1, 2, 2)
    op = torch.ops.passrt.sparse_conv2d
    args = dict(stride=[1, 1], padding=[1, 1], dilation=[1, 1], groups=1, tile=4, act=0, act_alpha=0.0, post_act=0)

    def call(**kw):
        a = dict(input=x, weight=w, bias=None, residual=None, tile_mask=mask, output=out, **args)
        a.update(kw)
        op(a["input"], a["weight"], a["bias"], a["residual"], a["tile_mask"], a["output"], a["stride"], a["padding"],
           a["dilation"], a["groups"], a["tile"], a["act"], a["act_alpha"], a["post_act"])

    call()  # valid
    with pytest.raises(RuntimeError, match="tile_mask must be"):
        call(tile_mask=torch.ones(1, 3, 3))
    with pytest.raises(RuntimeError, match="tile_mask must be float32"):
        call(tile_mask=torch.ones(1, 2, 2, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="float32 only"):
        call(input=x.half(), weight=w.half(), output=out.half())
    with pytest.raises(RuntimeError, match="weight has dtype"):
        call(weight=w.double())
    with pytest.raises(RuntimeError, match="must be contiguous"):
        call(output=torch.zeros(1, 4, 8, 8).transpose(2, 3))
    with pytest.raises(RuntimeError, match="divisible by groups"):
        call(groups=3)
    with pytest.raises(RuntimeError, match="does not fit input height"):
        call(output=torch.zeros(1, 4, 4, 8), tile_mask=torch.ones(1, 1, 2))
    with pytest.raises(RuntimeError, match="not an activation code"):
        call(act=9)
    with pytest.raises(RuntimeError, match="shares memory with input"):
        call(input=out)
    with pytest.raises(ValueError, match="spatial size"):  # the wrapper checks bottom/right padding
        extension.sparse_conv2d_op(x, w, None, torch.zeros(1, 4, 9, 8), torch.ones(3, 2), padding=1, tile=4)
    with pytest.raises(ValueError, match="unknown activation"):
        extension.sparse_conv2d_op(x, w, None, out, mask[0], padding=1, tile=4, activation="gelu")


def test_fake_kernels_for_compile_and_export():
    x, w = torch.randn(1, 4, 8, 8), torch.randn(4, 1, 3, 3)
    conv = (x, w, torch.randn(4), None, torch.ones(1, 4, 4), torch.zeros(1, 4, 8, 8), [1, 1], [1, 1], [1, 1], 4, 2,
            2, 0.0, 0)
    torch.library.opcheck(torch.ops.passrt.sparse_conv2d.default, conv)
