"""The C++/CUDA kernels in passrt/csrc/kernels/.

- Every .cu compiles with nvcc for Orin (sm_87) and Hopper (sm_90): compile only, no GPU.
- The CPU twins, which share the per-cell arithmetic (conv_cell.h) with the CUDA kernels,
  are built with the system C++ compiler and compared with passrt's PyTorch reference.
"""

import ctypes
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from passrt import contract
from passrt.kernels import sparse_conv2d
from passrt.kernels.tables import tile_grid
from tests.conftest import require_cxx, skip_or_fail

KERNELS = Path(__file__).resolve().parents[2] / "passrt" / "csrc" / "kernels"


def _nvcc():
    found = shutil.which("nvcc") or (Path("/usr/local/cuda/bin/nvcc") if Path("/usr/local/cuda/bin/nvcc").exists() else None)
    if not found:
        skip_or_fail("nvcc not found: CUDA kernels not compile-checked")
    return str(found)


@pytest.mark.parametrize("arch", ["87", "90"])
@pytest.mark.parametrize("source", sorted(p.name for p in KERNELS.glob("*.cu")))
def test_cuda_kernels_compile(source, arch, tmp_path):
    out = subprocess.run([_nvcc(), "-std=c++17", "-c", str(KERNELS / source), "-o", str(tmp_path / "k.o"),
                          "-gencode", f"arch=compute_{arch},code=sm_{arch}"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


class SparseConvParams(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int32) for n in (
        "batch", "in_channels", "in_h", "in_w", "out_channels", "out_h", "out_w", "kernel_h", "kernel_w",
        "stride_h", "stride_w", "dilation_h", "dilation_w", "pad_top", "pad_left", "groups", "tile", "act")] + [
        ("act_alpha", ctypes.c_float), ("post_act", ctypes.c_int32), ("in_stride", ctypes.c_int32),
        ("out_stride", ctypes.c_int32)]  # as passrt_kernels.h declares it: a field left out is read as garbage


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    cxx = require_cxx("the CPU twins cannot be built")
    so = tmp_path_factory.mktemp("native") / "libpassrt_kernels_cpu.so"
    sources = [str(KERNELS / "cpu" / f) for f in ("kernels_cpu.cpp", "sparse_conv2d_cpu.cpp")]
    out = subprocess.run([cxx, "-O2", "-std=c++17", "-shared", "-fPIC", *sources, "-o", str(so)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return ctypes.CDLL(str(so))


def ptr(t):
    return ctypes.cast(t.data_ptr(), ctypes.POINTER(ctypes.c_float)) if t is not None else None


# name -> (passrt::Activation code from the contract, the PyTorch function)
ACTS = {"none": (contract.ACTIVATION_CODES[None], None),
        "relu6": (contract.ACTIVATION_CODES["relu6"], F.relu6),
        "hardswish": (contract.ACTIVATION_CODES["hardswish"], F.hardswish),
        "leaky": (contract.ACTIVATION_CODES["leaky_relu"], lambda v: F.leaky_relu(v, 0.1))}


@pytest.mark.parametrize("k,s,d,g,pads,cin,cout,h,w,tile", [
    (1, 1, 1, 1, (0, 0, 0, 0), 8, 6, 9, 11, 4),
    (3, 2, 1, 6, (0, 1, 0, 1), 6, 6, 16, 12, 2),  # depthwise, TF-SAME asymmetric
    (3, 1, 2, 2, (2, 2, 2, 2), 4, 6, 13, 10, 3),
    (5, 2, 1, 1, (2, 2, 2, 2), 3, 4, 19, 21, 4),
])
@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("with_residual", [False, True])
def test_cpu_sparse_conv_matches_reference(lib, k, s, d, g, pads, cin, cout, h, w, tile, act, with_residual):
    gen = torch.Generator().manual_seed(k * 100 + tile)
    x = torch.randn(1, cin, h, w, generator=gen)
    weight = torch.randn(cout, cin // g, k, k, generator=gen)
    bias = torch.randn(cout, generator=gen)
    padded = F.pad(x, (pads[2], pads[3], pads[0], pads[1]))
    ho, wo = F.conv2d(padded, weight, None, s, 0, d, g).shape[2:]
    mask = torch.rand(tile_grid(ho, wo, tile), generator=gen) > 0.5
    residual = torch.randn(1, cout, ho, wo, generator=gen) if with_residual else None
    cache = torch.randn(1, cout, ho, wo, generator=gen)
    act_id, act_fn = ACTS[act]
    want = sparse_conv2d(x, weight, bias, cache.clone(), mask, stride=s, padding=pads, dilation=d, groups=g,
                         tile=tile, activation=act_fn, residual=residual)
    got = cache.clone()
    mask_f = mask.float().contiguous()  # keep a reference: ctypes only gets its pointer
    p = SparseConvParams(1, cin, h, w, cout, ho, wo, k, k, s, s, d, d, pads[0], pads[2], g, tile, act_id, 0.1, 0)
    lib.passrt_sparse_conv2d_cpu(ctypes.byref(p), ptr(x), ptr(weight), ptr(bias), ptr(residual),
                                 ptr(mask_f), ptr(got))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
