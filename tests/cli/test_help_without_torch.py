"""`passrt --help` and every subcommand's --help work without torch, onnx, onnxruntime or tensorrt:
the face of the tool imports only what it shows."""

import subprocess
import sys

import pytest

HIDE = "import sys; [sys.modules.__setitem__(m, None) for m in ('torch', 'onnx', 'onnxruntime', 'tensorrt', 'cv2')]; "
COMMANDS = ["", "run", "bench", "export", "build", "train-gates", "finetune", "assets"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_needs_no_heavy_import(command):
    argv = [command, "--help"] if command else ["--help"]
    code = HIDE + f"from passrt.cli.main import main; main({argv!r})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "usage: passrt" in out.stdout


def test_package_import_is_lazy():
    code = HIDE + "import passrt, passrt.policies; print(passrt.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip(), out.stderr
