"""Every .cu of the kernels (passrt/csrc/kernels) and of the PyTorch op (passrt/csrc/cuda) compiles
with nvcc for Orin (sm_87) and Hopper (sm_90). Compile only: no GPU needed.

One nvcc run per file with both -gencode targets, so the host side (for ops_cuda.cu mostly
the PyTorch headers) is compiled once. All files get the op build's nvcc flags
(torch.utils.cpp_extension.COMMON_NVCC_FLAGS: no implicit half conversions, relaxed
constexpr). The kernels compile as C++17, the TensorRT plugin's baseline; ops_cuda.cu as
the standard cpp_extension passes (C++20 for recent torch, whose headers warn or fail under
C++17), with C10_CUDA_NO_CMAKE_CONFIGURE_FILE because a CPU-only torch wheel lacks the
generated c10/cuda/impl/cuda_cmake_macros.h (a CUDA wheel has it; the define is harmless
there). Each file's compile time is printed.
"""

import inspect
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from torch.utils import cpp_extension

from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ROOT / "passrt" / "csrc" / "kernels"
OP_CUDA = ROOT / "passrt" / "csrc" / "cuda"
ARCHS = ["87", "90"]


def nvcc():
    found = shutil.which("nvcc")
    if not found and cpp_extension.CUDA_HOME:
        candidate = Path(cpp_extension.CUDA_HOME) / "bin" / "nvcc"
        found = str(candidate) if candidate.exists() else None
    if not found:
        skip_or_fail("nvcc not found (PATH or CUDA_HOME): CUDA sources not compile-checked")
    return found


def torch_cxx_std():
    """The standard torch's own extension builds pass (C++20 since torch 2.12-2.13, C++17 before)."""
    return "-std=c++20" if "-std=c++20" in inspect.getsource(cpp_extension) else "-std=c++17"


def flags_for(source: Path):
    common = list(cpp_extension.COMMON_NVCC_FLAGS)
    if source.parent == KERNELS:
        return ["-std=c++17", *common]
    includes = [f"-I{p}" for p in cpp_extension.include_paths()] + [f"-I{ROOT / 'passrt' / 'csrc'}", f"-I{KERNELS}"]
    return [torch_cxx_std(), "-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE", *common, *includes]


SOURCES = sorted(KERNELS.glob("*.cu")) + sorted(OP_CUDA.glob("*.cu"))


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_nvcc_compiles(source, tmp_path, capsys):
    gencode = [f for a in ARCHS for f in ("-gencode", f"arch=compute_{a},code=sm_{a}")]
    cmd = [nvcc(), "-c", str(source), "-o", str(tmp_path / "out.o"), *gencode, *flags_for(source)]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    with capsys.disabled():
        print(f"\n  nvcc {source.relative_to(ROOT)} (sm_{', sm_'.join(ARCHS)}): {seconds:.1f} s")
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stderr[-6000:]}"
