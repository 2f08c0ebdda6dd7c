"""The TensorRT plugin's weights laid out once (plugins/tensorrt/laidWeights.cpp), without TensorRT.

plugins/tensorrt/tests/laidWeightsTest.cu must compile with nvcc for Orin (sm_87) and Hopper (sm_90)
here and in CI; it runs where a CUDA device is (one layout over eager frames, a frame captured into a
CUDA graph, a capture before any memory was reserved). Without a GPU it exits 77 and the test skips with
that reason (a failure under PASSRT_REQUIRE_GPU=1). The host smoke test
(tests/plugins/test_tensorrt_plugin.py) drives the same class through the plugin with stand-ins.
"""

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import gpu_required, skip_or_fail
from tests.kernels.test_nvcc_compile import nvcc

ROOT = Path(__file__).resolve().parents[2]
KERNELS = ROOT / "passrt" / "csrc" / "kernels"
PLUGIN = ROOT / "plugins" / "tensorrt"
GENCODE = [f for a in ("87", "90") for f in ("-gencode", f"arch=compute_{a},code=sm_{a}")]
SKIP_STATUS = 77


@pytest.fixture(scope="module")
def laid_weights_test(tmp_path_factory):
    out = tmp_path_factory.mktemp("laid") / "laidWeightsTest"
    cmd = [nvcc(), "-std=c++17", "-O2", f"-I{KERNELS}", f"-I{PLUGIN}", *GENCODE,
           str(PLUGIN / "tests" / "laidWeightsTest.cu"), str(PLUGIN / "laidWeights.cpp"),
           str(KERNELS / "tiles_nhwc.cu"), "-o", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stderr[-6000:]}"
    return out


def test_weights_laid_out_once_on_the_gpu(laid_weights_test):
    env = {**os.environ, "PASSRT_REQUIRE_GPU": "1" if gpu_required() else "0"}
    done = subprocess.run([str(laid_weights_test)], capture_output=True, text=True, timeout=300, env=env)
    if done.returncode == SKIP_STATUS:
        skip_or_fail(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, done.stdout + done.stderr[-6000:]
    assert done.stdout.count("PASS: plugin weights") == 3 and "FAIL" not in done.stdout, done.stdout
