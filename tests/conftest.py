"""Shared test policy for what a machine may lack.

Two rules (STYLE.md item 12, fail loudly):

- **A broken build fails, it never skips.** Where a C++ compiler exists, passrt's op must
  build: the ``passrt_op`` fixture fails with the compiler's message when it does not, and
  skips (with the reason) only on a machine without a compiler.
- **GPU and TensorRT skips can be made failures.** Tests that need a GPU, TensorRT, its
  headers or nvcc skip with a reason through :func:`skip_or_fail`; with
  ``PASSRT_REQUIRE_GPU=1`` (a GPU/TensorRT CI job) every such skip is a failure instead, so a
  job that was meant to exercise the GPU cannot pass by skipping it.

Hypothesis profiles, so that a failing property test can be reproduced: with CI set
(true/1) the property tests are derandomised (the same examples on every run, no example
database), locally with ``CI=true python -m pytest ...``; every profile prints the
``@reproduce_failure`` blob of a failing example. HYPOTHESIS_PROFILE=NAME picks one.
"""

from __future__ import annotations

import os
import shutil
from typing import NoReturn, Optional

import pytest
from hypothesis import HealthCheck, settings

REQUIRE_GPU_ENV = "PASSRT_REQUIRE_GPU"


settings.register_profile("dev", print_blob=True)
settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE")
                      or ("ci" if os.environ.get("CI", "").lower() in ("true", "1") else "dev"))


def gpu_required() -> bool:
    return os.environ.get(REQUIRE_GPU_ENV, "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip a GPU/TensorRT/nvcc test for ``reason``, or fail it under ``PASSRT_REQUIRE_GPU=1``."""
    if gpu_required():
        pytest.fail(f"{REQUIRE_GPU_ENV}=1 but: {reason}", pytrace=False)
    pytest.skip(reason)


def cxx_compiler() -> Optional[str]:
    """The C++ compiler torch's cpp_extension would use ($CXX, else c++), else g++ on PATH."""
    try:
        from torch.utils.cpp_extension import get_cxx_compiler
        candidate = get_cxx_compiler()
    except (ImportError, AttributeError):  # older torch: no helper, fall back to PATH
        candidate = os.environ.get("CXX", "c++")
    return shutil.which(candidate) or shutil.which("c++") or shutil.which("g++")


def require_cxx(what: str) -> str:
    """The C++ compiler, or a skip saying that ``what`` needs one (a genuine absence, never a failed build)."""
    cxx = cxx_compiler()
    if cxx is None:
        pytest.skip(f"no C++ compiler (c++/g++): {what}")
    return cxx


def require_op() -> None:
    """passrt's compiled op must be loaded: fail with the build's error if a compiler exists."""
    from passrt.kernels import extension

    try:
        extension.require()
    except RuntimeError as exc:
        if cxx_compiler() is None:
            pytest.skip(f"no C++ compiler (c++/g++), so passrt's op cannot be built: {extension.status()}")
        pytest.fail(f"passrt's C++ op failed to build although a C++ compiler exists:\n{exc}", pytrace=False)


def require_cuda_op() -> None:
    """The op's CUDA kernels must be loaded where a GPU is; skip_or_fail where there is none."""
    import torch

    from passrt.kernels import extension

    if not torch.cuda.is_available():
        skip_or_fail("CUDA not available (torch.cuda.is_available() is False)")
    require_op()
    if extension.has_cuda():
        return
    if extension.cuda_build_error():  # GPU and nvcc present, the CUDA build failed: a broken build
        try:
            extension.require(cuda=True)
        except RuntimeError as exc:
            pytest.fail(f"a GPU is present but the op's CUDA build failed:\n{exc}", pytrace=False)
    skip_or_fail(f"passrt op built without its CUDA kernels: {extension.status()}")


@pytest.fixture(scope="session")
def passrt_op():
    """Use in every test that needs ``torch.ops.passrt`` (CPU)."""
    require_op()


@pytest.fixture(scope="session")
def passrt_cuda_op():
    """Use in every test that needs the op's CUDA kernels."""
    require_cuda_op()
