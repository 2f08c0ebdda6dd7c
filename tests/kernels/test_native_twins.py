"""The standalone native test (tests/native/twins_test.cu): the NHWC CUDA tile kernels against
their CPU twins, without torch or TensorRT.

With nvcc (here and in CI) it must compile for Orin (sm_87) and Hopper (sm_90), and its CPU side
(the twins against a direct convolution) must pass. Its GPU side runs where a CUDA device is; without
one the program exits 77 and the test skips with that reason (a failure under PASSRT_REQUIRE_GPU=1).
The CUDA-core path that Jetson Nano (sm_53) compiles is compile-checked with PASSRT_NO_TENSOR_CORES:
CUDA 13's nvcc no longer targets sm_53.
"""

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import gpu_required, skip_or_fail
from tests.kernels.test_nvcc_compile import nvcc

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ROOT / "passrt" / "csrc" / "kernels"
NATIVE = ROOT / "tests" / "native"
GENCODE = [f for a in ("87", "90") for f in ("-gencode", f"arch=compute_{a},code=sm_{a}")]
SKIP_STATUS = 77


def build(out: Path, *extra: str) -> Path:
    cmd = [nvcc(), "-std=c++17", "-O2", f"-I{KERNELS}", f"-I{NATIVE}", *GENCODE, *extra,
           str(NATIVE / "twins_test.cu"), str(KERNELS / "tiles_nhwc.cu"), str(KERNELS / "cpu" / "tiles_nhwc_cpu.cpp"),
           "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stderr[-6000:]}"
    return out


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    return build(tmp_path_factory.mktemp("native") / "twins_test")


def test_cpu_side(twins):
    done = subprocess.run([str(twins), "--cpu-only"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "CPU twins vs direct conv: 840 cases, ok" in done.stdout


def test_gpu_side(twins):
    env = {**os.environ, "PASSRT_REQUIRE_GPU": "1" if gpu_required() else "0"}
    done = subprocess.run([str(twins)], capture_output=True, text=True, timeout=600, env=env)
    if done.returncode == SKIP_STATUS:
        skip_or_fail(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, done.stdout + done.stderr[-6000:]
    assert "CUDA kernels vs CPU twins:" in done.stdout and "ok" in done.stdout


def test_cuda_core_path_compiles(tmp_path):
    """The path sm_53 takes (no WMMA), compiled for sm_87/sm_90 and C++14 (JetPack 4.6's nvcc)."""
    for flags in (["-std=c++14"], ["-std=c++14", "-DPASSRT_NO_TENSOR_CORES"]):
        cmd = [nvcc(), *flags, "-c", str(KERNELS / "tiles_nhwc.cu"), "-o", str(tmp_path / "k.o"), *GENCODE]
        done = subprocess.run(cmd, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stderr[-4000:]}"
