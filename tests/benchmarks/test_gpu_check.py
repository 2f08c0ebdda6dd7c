"""benchmarks/gpu_check.sh: its dry run here prints every step, what it would run and why it is skipped."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = ["nvidia-smi", "native", "plugin-weights", "calibrate", "sanitizer", "cuda-tests", "bench", "tensorrt"]


def load():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


def test_dry_run_prints_every_step_and_why(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path)],
                          capture_output=True, text=True, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin:"
                                                               + str(Path(sys.executable).parent) + ":/usr/local/bin"})
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "gpu_check.dry-run.json").read_text())
    assert [s["step"] for s in summary["steps"]] == STEPS and summary["dry_run"]
    for step in summary["steps"]:
        header = next(line for line in done.stdout.splitlines() if line.startswith(f"[{step['step']}]"))
        if step["status"] == "skipped":  # the reason is printed and recorded
            assert step["reason"] and step["reason"] in header
        else:
            assert step["status"] == "would run" and "would run" in header
    assert "$ " in done.stdout and "twins_test" in done.stdout and "--device cuda --half" in done.stdout
    assert "laidWeightsTest" in done.stdout  # the plugin's weights laid out once, on the GPU without TensorRT
    # the native executor on CUDA is tested and benchmarked, with CUDA graphs and without
    assert "tests/engine/test_native_cuda.py" in done.stdout and "--no-cuda-graphs" in done.stdout
    assert not (tmp_path / "gpu_check.json").exists(), "a dry run leaves no results that look like a real run"
    if load().gpu_arch()[0] is None:  # this machine: no GPU, so every GPU step says so
        for step in summary["steps"]:
            assert step["status"] == "skipped" and ("nvidia-smi" in step["reason"] or "GPU" in step["reason"])


def test_without_a_gpu_a_real_run_fails(tmp_path, capsys):
    module = load()
    if module.gpu_arch()[0] is not None:
        pytest.skip("this machine has a GPU: the real run is the device check itself")
    assert module.main(["--out", str(tmp_path), "--budget", "30"]) == 1, "checks that did not run are not a pass"
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    assert {s["status"] for s in summary["steps"]} == {"skipped"}
    last = capsys.readouterr().out.strip().splitlines()[-1]  # the one line to read: FAIL, naming what did not run
    assert last.startswith("gpu_check: FAIL (steps not passed: nvidia-smi, native, plugin-weights"), last
    assert "tensorrt" not in last  # optional: not applicable without TensorRT


def test_bad_arguments_are_one_line(tmp_path, capsys):
    assert load().main(["--budget", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "gpu_check: error:" in err
