"""passrt's compiled PyTorch op (``torch.ops.passrt.*``), built on first use.

:func:`load` compiles ``passrt/csrc`` (the op and, in ``passrt/csrc/kernels``, the kernels
it shares with the TensorRT plugin; all package data, so an installed wheel can build it) with
``torch.utils.cpp_extension.load`` (ninja) into passrt's cache
(``passrt.assets.cache_dir() / "build"``) and loads the library, which registers the ops.
The CUDA sources join the build only when PyTorch sees a GPU and ``nvcc`` exists. For users, a
failed build is remembered, not raised: ``load()`` returns False and :func:`status` says why, so
callers can fall back to the pure-PyTorch kernels. Code that needs the op (and the tests) calls
:func:`require`, which raises with the compiler's error instead.

:func:`sparse_conv2d_op` takes the same arguments as
:func:`passrt.kernels.reference.sparse_conv2d` (the activation as a name), so tests call both
the same way.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Optional

import torch

from passrt import contract
from passrt.assets import cache_dir

CSRC = Path(__file__).resolve().parents[1] / "csrc"
KERNELS = CSRC / "kernels"

_lock = threading.Lock()
_state = {"tried": False, "ok": False, "cuda": False, "reason": "not built yet: call passrt.kernels.extension.load()"}


def _nvcc() -> Optional[str]:
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME and (Path(CUDA_HOME) / "bin" / "nvcc").exists():
        return str(Path(CUDA_HOME) / "bin" / "nvcc")
    return shutil.which("nvcc")


def _why_no_cuda() -> Optional[str]:
    """None when the CUDA sources can be built, else the reason they are left out."""
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False"
    if _nvcc() is None:
        return "nvcc not found (set CUDA_HOME)"
    return None


def _sources(cuda: bool) -> list[Path]:
    cpu = [CSRC / "ops.cpp", CSRC / "cpu" / "ops_cpu.cpp", KERNELS / "cpu" / "sparse_conv2d_cpu.cpp",
           CSRC / "cpu" / "tiles_cpu.cpp", KERNELS / "cpu" / "tiles_nhwc_cpu.cpp",
           CSRC / "cpu" / "frame_cpu.cpp", KERNELS / "cpu" / "frame_change_cpu.cpp"]
    gpu = [CSRC / "cuda" / "ops_cuda.cu", KERNELS / "sparse_conv2d.cu", CSRC / "cuda" / "tiles_cuda.cu",
           KERNELS / "tiles_nhwc.cu"]
    return cpu + (gpu if cuda else [])


def _summary(exc: BaseException) -> str:
    """One readable reason from a build failure (compiler errors first, else the message's tail)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    picked = (errors or lines[-5:])[:5]
    return f"{type(exc).__name__}: " + " | ".join(picked) if picked else type(exc).__name__


def _tail(exc: BaseException, chars: int = 6000) -> str:
    """The end of a build failure's full text (ninja's output holds the compiler's messages)."""
    text = str(exc)
    return text if len(text) <= chars else "...\n" + text[-chars:]


def _ops_registered() -> bool:
    try:
        torch.ops.passrt.sparse_conv2d  # noqa: B018 (raises AttributeError when the library is not loaded)
        return True
    except (AttributeError, RuntimeError):
        return False


def _has_cuda_kernels() -> bool:
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key("passrt::sparse_conv2d", "CUDA")
    except (AttributeError, RuntimeError):  # private API: if it moves, report no CUDA rather than fail
        return False


def load(verbose: bool = False) -> bool:
    """Build (once, cached on disk) and load the op; True when ``torch.ops.passrt`` is usable.

    Never raises: a failure is remembered (the build is not retried in this process) and
    :func:`status` reports it.
    """
    with _lock:
        if _state["tried"]:
            return _state["ok"]
        _state["tried"] = True
        try:
            if not _ops_registered():
                _build(verbose)
            if not _ops_registered():
                raise RuntimeError("the library loaded but registered no passrt ops")
            _register_fakes()
            _state["cuda"] = _has_cuda_kernels()
        except Exception as exc:  # any build/load failure: remembered and reported, not raised
            _state["reason"] = _summary(exc)
            _state["log"] = _tail(exc)
            return False
        _state["ok"] = True
        return True


def _build(verbose: bool) -> None:
    from torch.utils import cpp_extension

    missing = [str(s) for s in _sources(False) if not s.exists()]
    if missing:
        raise FileNotFoundError(f"sources missing from the installed package (reinstall passrt): {', '.join(missing)}")
    if _why_no_cuda() is None:
        try:
            _compile(cpp_extension, cuda=True, verbose=verbose)
            return
        except Exception as exc:  # keep the CPU op usable; status() tells why CUDA is missing
            _state["cuda_error"] = f"the CUDA build failed: {_summary(exc)}"
            _state["cuda_log"] = _tail(exc)
    _compile(cpp_extension, cuda=False, verbose=verbose)


def _compile(cpp_extension, cuda: bool, verbose: bool) -> None:
    name = "passrt_ops_cuda" if cuda else "passrt_ops_cpu"
    build = cache_dir() / "build" / name
    build.mkdir(parents=True, exist_ok=True)
    if not (build / f"{name}.so").exists():  # the first use on this machine: say why it pauses
        import sys

        print(f"passrt: building its C++ kernels in {build} (once per machine, about a minute)", file=sys.stderr)
    cpp_extension.load(
        name=name,
        sources=[str(s) for s in _sources(cuda)],
        extra_include_paths=[str(CSRC), str(KERNELS)],
        # Built where it runs (on first use), so the CPU kernels may use every vector unit the machine has.
        # OpenMP as PyTorch's own: at::parallel_for is a header template that splits work with
        # `#pragma omp parallel`, so without -fopenmp every kernel of ours would run on one thread.
        extra_cflags=["-O3"] + _native_arch() + _openmp(),
        extra_ldflags=_openmp(),
        extra_cuda_cflags=["-O3"],
        build_directory=str(build),
        verbose=verbose,
        is_python_module=False,  # a plain library: loading it runs TORCH_LIBRARY, no Python module needed
    )


def _openmp() -> list[str]:
    """['-fopenmp'] when PyTorch runs its threads with OpenMP (the loaded libgomp/libomp is then shared),
    else [] (at::parallel_for then uses PyTorch's own thread pool, no flag needed)."""
    import torch

    return ["-fopenmp"] if torch.backends.openmp.is_available() else []


def _native_arch() -> list[str]:
    """['-march=native'] when the C++ compiler accepts it (GCC and Clang on x86-64 and aarch64), else []."""
    import subprocess

    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        return []
    try:
        ok = subprocess.run([cxx, "-march=native", "-x", "c++", "-E", "-"], input=b"", capture_output=True,
                            timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return ["-march=native"] if ok else []


def status() -> str:
    """'compiled C++/CPU op', 'compiled C++/CPU+CUDA op' or 'not built: <reason>'."""
    if _state["ok"]:
        if _state["cuda"]:
            return "compiled C++/CPU+CUDA op"
        why = _state.get("cuda_error") or _why_no_cuda()
        return "compiled C++/CPU op" + (f" (no CUDA kernels: {why})" if why else " (CUDA kernels not built)")
    if not _state["tried"]:
        return _state["reason"]
    return f"not built: {_state['reason']}"


def _register_fakes() -> None:
    """Shape-only kernel, so torch.compile and torch.export can trace the op."""
    register = getattr(torch.library, "register_fake", None) or torch.library.impl_abstract  # torch < 2.4

    @register("passrt::sparse_conv2d")
    def _(input, weight, bias, residual, tile_mask, output, stride, padding, dilation, groups, tile, act,
          act_alpha, post_act):
        return None  # writes into `output`, returns nothing

    @register("passrt::frame_block_rank_change")
    def _(a, others, block, rank):
        h, w = a.shape[2:]
        return a.new_empty(len(others), ((h - block) // (2 * block) + 1) * ((w - block) // (2 * block) + 1))

    @register("passrt::frame_block_counts")
    def _(a, b, limit, block):
        return a.new_empty(1, 1, -(-a.shape[2] // block), -(-a.shape[3] // block))

    @register("passrt::frame_copy_blocks_")
    def _(dst, src, mask, block):
        return None

    @register("passrt::frame_pixel_changes_")
    def _(ref, a, limit):
        return a.new_empty(1, 1, *a.shape[2:])

    @register("passrt::row_changes_")
    def _(ref, src, rows, threshold, cells):
        return src.new_empty(cells)

    @register("passrt::affine_tiles")
    def _(input, scale, shift, tiles, output, size, tile):
        return None  # writes into `output`, returns nothing

    @register("passrt::conv_tiles")
    def _(input, weight, bias, residual, tiles, output, in_size, out_size, kernel, stride, padding, dilation, groups,
          tile, act, act_alpha, post_act, follow_weight, follow_bias, follow_residual, follow_act, follow_alpha,
          follow_post_act):
        return None  # writes into `output`, returns nothing



def has_cuda() -> bool:
    """True when the op is loaded with its CUDA kernels."""
    return bool(load() and _state["cuda"])


def cuda_build_error() -> Optional[str]:
    """The CUDA build's error when it was attempted (GPU and nvcc present) and failed, else None."""
    load()
    return _state.get("cuda_error")


def require(cuda: bool = False) -> None:
    """Build and load the op or raise RuntimeError with the build's error (the compiler's messages).

    ``cuda=True`` also requires the CUDA kernels. For code that needs the op and for tests, where
    a broken build must fail loudly rather than fall back.
    """
    if not load():
        raise RuntimeError(f"passrt C++ op: {status()}\n{_state.get('log', '')}".rstrip())
    if cuda and not _state["cuda"]:
        raise RuntimeError(f"passrt C++ op has no CUDA kernels: {status()}\n{_state.get('cuda_log', '')}".rstrip())


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def sparse_conv2d_op(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], out: torch.Tensor,
                     tile_mask: torch.Tensor, *, stride=1, padding=0, dilation=1, groups: int = 1, tile: int = 4,
                     activation: Optional[str] = None, residual: Optional[torch.Tensor] = None,
                     act_alpha: float = 0.01, post_activation: Optional[str] = None) -> torch.Tensor:
    """:func:`passrt.kernels.reference.sparse_conv2d` run by ``torch.ops.passrt.sparse_conv2d``.

    Recomputes ``post_activation(activation(conv2d(x) + bias) + residual)`` on the tiles where
    ``tile_mask`` is true and writes them into ``out`` [N, C_out, Ho, Wo] (contiguous), which
    keeps its values elsewhere. ``padding`` is an int, a pair or (top, bottom, left, right);
    ``tile_mask`` is [Ht, Wt] (every image) or [N, Ht, Wt], bool or float 0/1. Activations are
    names: "relu", "relu6", "hardswish", "silu", "sigmoid", "leaky_relu" (slope ``act_alpha``,
    F.leaky_relu's default) or None. Returns ``out``.
    """
    require()
    act, post = (_activation_code(a) for a in (activation, post_activation))
    if isinstance(padding, int) or len(padding) == 2:
        ph, pw = _pair(padding)
        top, bottom, left, right = ph, ph, pw, pw
    else:
        top, bottom, left, right = (int(v) for v in padding)
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    kh, kw = weight.shape[2:]
    size = ((x.shape[2] + top + bottom - dh * (kh - 1) - 1) // sh + 1,
            (x.shape[3] + left + right - dw * (kw - 1) - 1) // sw + 1)
    if tuple(out.shape[2:]) != size:  # the op only sees (top, left): catch a bottom/right mismatch here
        raise ValueError(f"out has spatial size {tuple(out.shape[2:])}, the conv gives {size}")
    mask = tile_mask.to(device=out.device, dtype=torch.float32)
    if mask.dim() == 2:
        mask = mask.unsqueeze(0).expand(out.shape[0], *mask.shape)
    contig = lambda t: t.contiguous() if t is not None else None  # noqa: E731
    torch.ops.passrt.sparse_conv2d(contig(x), contig(weight), contig(bias), contig(residual), mask.contiguous(),
                                   out, [sh, sw], [top, left], [dh, dw], groups, tile, act, float(act_alpha), post)
    return out


def _activation_code(name: Optional[str]) -> int:
    codes = contract.ACTIVATION_CODES
    if name not in codes:
        raise ValueError(f"unknown activation {name!r}; use one of {[k for k in codes if k]} or None")
    return codes[name]


__all__ = ["load", "require", "status", "has_cuda", "cuda_build_error", "sparse_conv2d_op"]
