"""Everything passrt can check on a GPU machine, as one command (benchmarks/gpu_check.sh calls this).

    bash benchmarks/gpu_check.sh [--out DIR] [--dry-run] [--budget SECONDS] [--frames N]

Steps, in order of what matters most, each with its own time limit inside one budget (default 570 s,
so the whole check stays under 10 minutes on an H200):

1. ``nvidia-smi``: the device, driver and clocks, for the record.
2. ``native``: tests/native/twins_test.cu built with nvcc for this GPU's architecture, no torch:
   CUDA tile kernels vs their CPU twins (with their own PASS/FAIL lines for fp16 kHWC8 rows, i.e. a
   12-channel head in rows of 16 as the TensorRT plugin now runs it, and for grouped convs), then
   per-layer SSDLite timing at 0/15/100 % active (fp16);
   ``plugin-weights``: plugins/tensorrt/tests/laidWeightsTest.cu (no TensorRT): the plugin's weights laid
   out once into its own memory, also across a CUDA graph capture, one PASS/FAIL line per part;
   ``calibrate``: those timings against the cost model's predictions (benchmarks/cost_calibrate.py).
3. ``sanitizer``: compute-sanitizer memcheck and racecheck on a subset (twins_test --quick).
4. ``cuda-tests``: the op's CUDA tests (padded rows and grouped convs included), the native executor
   on CUDA against the reference (fp32 and fp16, CUDA graphs on and off: tests/engine/test_native_cuda.py),
   the op executor on CUDA and the standalone test through pytest, skips made failures
   (PASSRT_REQUIRE_GPU=1); the op is built for this GPU only (TORCH_CUDA_ARCH_LIST).
5. ``bench``: ``passrt bench --device cuda --half`` on vtest at 768x576: dense cuDNN fp16 vs passrt's
   native executor on CUDA (NHWC tile kernels, masks on the GPU, each frame a CUDA graph), with
   agreement; then the same with ``--no-cuda-graphs`` (bench_eager.json: what the graphs save). Needs
   vtest and the SSDLite model in the asset cache (PASSRT_CACHE), carried with the working tree: the GPU
   machine cannot download.
6. ``tensorrt``: only where ``import tensorrt`` works: the plugin built with CMake and the TensorRT
   tests, fp16 included, skips made failures.

A step whose tools or inputs are missing is skipped with the reason; ``--dry-run`` prints every step,
its command and whether it would run or why not, and runs nothing. Each step that ran prints
``[step] PASS`` or ``[step] FAIL`` and, under it, the ``PASS:``/``FAIL:`` lines its programs printed; the
last line is ``gpu_check: PASS`` or ``gpu_check: FAIL (steps ...)``. Results: DIR/gpu_check.json
(steps with status, seconds, exit code, reason; the machine) and DIR/gpu_check.log (every command's
output), both meant to be committed with the device named. Exit status: 0 when every step passed
(the TensorRT step may be not applicable), 1 when one failed, timed out or was skipped (a check that did
not run is not a pass); a dry run exits 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ROOT / "passrt" / "csrc" / "kernels"
NATIVE = ROOT / "tests" / "native"
PLUGIN = ROOT / "plugins" / "tensorrt"


@dataclass
class Step:
    name: str
    why: str
    commands: list  # list of argv lists (or a callable's description)
    limit_s: int
    needs: list = field(default_factory=list)  # (ok, reason if not) pairs
    env: dict = field(default_factory=dict)
    optional: bool = False  # skipped without TensorRT etc. is expected, not a gap

    def missing(self) -> str | None:
        """Every reason the step cannot run here (all of them, so a dry run lists the whole gap), or None."""
        reasons = list(dict.fromkeys(reason for ok, reason in self.needs if not ok))
        return "; ".join(reasons) or None


def have_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def gpu_arch() -> tuple[str | None, str]:
    """(compute capability like '90', why not) from nvidia-smi."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None, "nvidia-smi not found (no NVIDIA driver on this machine)"
    out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True, text=True)
    if out.returncode != 0 or not out.stdout.strip():
        return None, f"nvidia-smi sees no GPU ({(out.stderr or out.stdout).strip()[:200]})"
    return out.stdout.strip().splitlines()[0].replace(".", ""), ""


def cuda_in_torch() -> tuple[bool, str]:
    if not have_module("torch"):
        return False, "torch is not importable"
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.is_available(), torch.__version__)"],
                         capture_output=True, text=True)
    ok = out.stdout.startswith("True")
    return ok, "" if ok else f"torch has no CUDA device ({out.stdout.strip() or out.stderr.strip()[-200:]})"


def device_key() -> str:
    """The cost model's device for this GPU (passrt.plan.cost.DEVICES): by name, H200 otherwise."""
    smi = shutil.which("nvidia-smi")
    name = ""
    if smi:
        name = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                              text=True).stdout.lower()
    for key, words in (("orin", ["orin"]), ("xavier", ["xavier"]), ("nano", ["nano", "tegra x1"])):
        if any(w in name for w in words):
            return key
    return "h200"


def asset_cached(name: str) -> bool:
    sys.path.insert(0, str(ROOT))
    try:
        from passrt import assets
        return assets.is_cached(name)
    except Exception:  # noqa: BLE001 - a broken import is reported by the steps that need passrt
        return False
    finally:
        sys.path.pop(0)


def plan(out: Path, frames: int) -> list[Step]:
    arch, no_gpu = gpu_arch()
    nvcc = shutil.which("nvcc")
    sanitizer = shutil.which("compute-sanitizer")
    torch_cuda, no_torch_cuda = cuda_in_torch()
    gpu = (arch is not None, no_gpu)
    twins = out / "twins_test"
    gencode = ["-gencode", f"arch=compute_{arch},code=sm_{arch}"] if arch else []
    build = [nvcc or "nvcc", "-std=c++17", "-O2", f"-I{KERNELS}", f"-I{NATIVE}", *gencode, str(NATIVE / "twins_test.cu"),
             str(KERNELS / "tiles_nhwc.cu"), str(KERNELS / "cpu" / "tiles_nhwc_cpu.cpp"), "-o", str(twins)]
    laid = out / "laidWeightsTest"
    build_laid = [nvcc or "nvcc", "-std=c++17", "-O2", f"-I{KERNELS}", f"-I{PLUGIN}", *gencode,
                  str(PLUGIN / "tests" / "laidWeightsTest.cu"), str(PLUGIN / "laidWeights.cpp"),
                  str(KERNELS / "tiles_nhwc.cu"), "-o", str(laid)]
    require = {"PASSRT_REQUIRE_GPU": "1"}
    arch_list = {"TORCH_CUDA_ARCH_LIST": f"{arch[:-1]}.{arch[-1]}"} if arch else {}
    pytest_ok = (have_module("pytest") and have_module("hypothesis"),
                 "pytest/hypothesis not importable (carry their wheels: see docs/TENSORRT.md, 'Device check')")
    python = sys.executable
    steps = [
        Step("nvidia-smi", "the device, driver and clocks, for the record", [["nvidia-smi"]], 30, [gpu]),
        Step("native", "CUDA tile kernels vs CPU twins, then SSDLite per-layer timing (no torch)",
             [build, [str(twins), "--time", "--json", str(out / "native_timing.json")]], 150,
             [gpu, (nvcc is not None, "nvcc not found")], env=require),
        Step("plugin-weights", "the TensorRT plugin's weights laid out once into its own memory (no TensorRT needed)",
             [build_laid, [str(laid)]], 60, [gpu, (nvcc is not None, "nvcc not found")], env=require),
        Step("calibrate", "the cost model's per-layer predictions against those timings (measured / predicted)",
             [[python, "benchmarks/cost_calibrate.py", str(out / "native_timing.json"), device_key(),
               str(out)]], 60,
             [gpu, (nvcc is not None, "nvcc not found"), (have_module("torch"), "torch is not importable"),
              (asset_cached("ssdlite-pedestrian"), "ssdlite-pedestrian not in the asset cache (PASSRT_CACHE)")]),
        Step("sanitizer", "compute-sanitizer memcheck + racecheck on a subset of the kernel matrix",
             [["compute-sanitizer", "--tool", "memcheck", "--error-exitcode", "1", str(twins), "--quick"],
              ["compute-sanitizer", "--tool", "racecheck", "--error-exitcode", "1", str(twins), "--quick"]], 90,
             [gpu, (nvcc is not None, "nvcc not found"), (sanitizer is not None, "compute-sanitizer not found")],
             env=require),
        Step("cuda-tests", "the op's CUDA tests, the native executor on CUDA (graphs on/off, fp32/fp16) and the "
                           "standalone test via pytest, skips are failures",
             [[python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests/kernels/test_op_cuda.py",
               "tests/kernels/test_tile_kernels_strided_cuda.py", "tests/engine/test_native_cuda.py",
               "tests/engine/test_executors.py::test_cuda_op_executor_equals_reference_on_real_frames",
               "tests/kernels/test_native_twins.py::test_gpu_side"]], 240,
             [gpu, (torch_cuda, no_torch_cuda), pytest_ok], env={**require, **arch_list}),
        Step("bench", f"dense cuDNN fp16 vs passrt's native executor on CUDA (fp16), vtest 768x576, {frames} frames, "
                      "CUDA graphs on, then off",
             [[python, "-m", "passrt", "bench", "--input", "vtest", "--device", "cuda", "--half", "--frames",
               str(frames), "--policies", "dense,regiondrop", "--no-onnxruntime", "--json", str(out / "bench.json")],
              [python, "-m", "passrt", "bench", "--input", "vtest", "--device", "cuda", "--half", "--frames",
               str(frames), "--policies", "dense,regiondrop", "--no-onnxruntime", "--no-cuda-graphs", "--json",
               str(out / "bench_eager.json")]],
             180, [gpu, (torch_cuda, no_torch_cuda), (have_module("cv2"), "cv2 (opencv-python-headless) not importable"),
                   (asset_cached("vtest") and asset_cached("ssdlite-pedestrian"),
                    "vtest or ssdlite-pedestrian not in the asset cache (PASSRT_CACHE): carry them with the tree")],
             env=arch_list),
        Step("tensorrt", "plugin build (CMake) and the TensorRT tests with fp16, skips are failures",
             [["cmake", "-S", "plugins/tensorrt", "-B", str(out / "trt-build"), "-DCMAKE_BUILD_TYPE=Release",
               f"-DCMAKE_CUDA_ARCHITECTURES={arch or 'native'}"],
              ["cmake", "--build", str(out / "trt-build"), "-j"],
              [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "tensorrt",
               "tests/plugins/test_tensorrt_plugin.py", "tests/runtime/test_tensorrt_backend.py"]], 150,
             [gpu, (have_module("tensorrt"), "TensorRT's Python package is not importable (none on the H200)"),
              (shutil.which("cmake") is not None, "cmake not found"), pytest_ok],
             env={**require, "PASSRT_TRT_PLUGIN": str(out / "trt-build" / "libpassrt_trt.so")}, optional=True),
    ]
    return steps


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu_check"), help="results folder")
    ap.add_argument("--dry-run", action="store_true", help="print what would run and why a step is skipped")
    ap.add_argument("--budget", type=int, default=570, help="seconds for all steps together (default 570)")
    ap.add_argument("--frames", type=int, default=100, help="frames for the bench step (default 100)")
    args = ap.parse_args(argv)
    if args.budget < 1 or args.frames < 1:
        print("gpu_check: error: --budget and --frames must be >= 1", file=sys.stderr)
        return 2
    out = Path(args.out).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        print(f"gpu_check: error: cannot create {out}: {e.strerror}", file=sys.stderr)
        return 2
    steps = plan(out, args.frames)
    start = time.monotonic()
    results, failed = [], False
    log_path = out / ("gpu_check.dry-run.log" if args.dry_run else "gpu_check.log")
    with open(log_path, "w") as log:
        for step in steps:
            reason = step.missing()
            left = args.budget - (time.monotonic() - start)
            if reason is None and left < 10:
                reason = f"time budget spent ({args.budget} s)"
            shown = "\n".join("    $ " + " ".join(c) for c in step.commands)
            if reason is not None:
                kind = "not applicable" if step.optional else "skipped"
                line = f"[{step.name}] {kind}: {reason}\n  would run ({step.why}):\n{shown}"
                print(line, flush=True)
                log.write(line + "\n")
                results.append({"step": step.name, "status": "skipped", "reason": reason, "optional": step.optional})
                failed |= not step.optional and not args.dry_run
                continue
            if args.dry_run:
                line = f"[{step.name}] would run ({step.why}), limit {step.limit_s} s:\n{shown}"
                print(line, flush=True)
                log.write(line + "\n")
                results.append({"step": step.name, "status": "would run"})
                continue
            record = run_step(step, min(step.limit_s, int(left)), log)
            failed |= record["status"] != "passed"
            results.append(record)
            verdict = "PASS" if record["status"] == "passed" else f"FAIL ({record['status']})"
            print(f"[{step.name}] {verdict} in {record['seconds']:.1f} s", flush=True)
            for line in record.get("checks", []):
                print(f"    {line}", flush=True)
    summary = {"dry_run": args.dry_run, "steps": results, "seconds": round(time.monotonic() - start, 1),
               "machine": machine(), "log": log_path.name}
    (out / ("gpu_check.dry-run.json" if args.dry_run else "gpu_check.json")).write_text(json.dumps(summary, indent=1))
    print(f"wrote {out / ('gpu_check.dry-run.json' if args.dry_run else 'gpu_check.json')} and {log_path}")
    if not args.dry_run:
        bad = [r["step"] for r in results if r["status"] != "passed" and not r.get("optional")]
        print("gpu_check: PASS" if not failed else f"gpu_check: FAIL (steps not passed: {', '.join(bad)})")
    return 1 if failed else 0


def run_step(step: Step, limit: int, log) -> dict:
    env = {**os.environ, **step.env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    t0 = time.monotonic()
    checks = []  # the PASS:/FAIL: lines the step's programs print (twins_test, laidWeightsTest)

    def keep(output) -> None:
        text = output.decode(errors="replace") if isinstance(output, bytes) else (output or "")
        log.write(text)
        log.flush()
        checks.extend(line.strip() for line in text.splitlines() if line.startswith(("PASS:", "FAIL:")))

    for cmd in step.commands:
        log.write(f"\n===== [{step.name}] $ {' '.join(cmd)}\n")
        log.flush()
        remaining = limit - (time.monotonic() - t0)
        try:
            done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=max(1, remaining))
        except subprocess.TimeoutExpired as e:
            keep(e.output)
            return {"step": step.name, "status": "timed out", "seconds": time.monotonic() - t0, "limit_s": limit,
                    "command": cmd, "checks": checks}
        keep(done.stdout)
        if done.returncode != 0:
            return {"step": step.name, "status": "failed", "seconds": time.monotonic() - t0, "exit_code": done.returncode,
                    "command": cmd, "checks": checks}
    return {"step": step.name, "status": "passed", "seconds": time.monotonic() - t0, "checks": checks}


def machine() -> dict:
    info = {"host": platform.node(), "python": platform.python_version(), "platform": platform.platform()}
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run([smi, "--query-gpu=name,driver_version,compute_cap,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True)
        info["gpu"] = out.stdout.strip() or None
    nvcc = shutil.which("nvcc")
    if nvcc:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True)
        info["nvcc"] = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else None
    for mod in ("torch", "tensorrt"):
        if have_module(mod):
            out = subprocess.run([sys.executable, "-c", f"import {mod}; print({mod}.__version__)"], capture_output=True,
                                 text=True)
            info[mod] = out.stdout.strip() or None
    return info


if __name__ == "__main__":
    sys.exit(main())
