"""Faults a deployment meets, with the real CLI in a real subprocess: SIGTERM/SIGINT, a full disk,
outputs that cannot or must not be written, bad numbers, credentials in source URIs."""

import json
import os
import resource
import signal
import subprocess
import sys

import cv2
import pytest

from tests.cli.test_cli import passrt
from tests.runtime.servers import serve_directory
from tests.runtime.test_io import write_clip

PYTHON = [sys.executable, "-m", "passrt"]


def decoded_frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_signal_ends_run_cleanly_with_playable_video_and_summary(tmp_path, sig, status):
    video, summary = tmp_path / "out.mp4", tmp_path / "run.json"
    proc = subprocess.Popen([*PYTHON, "run", "--input", "vtest", "--headless", "--output", str(video),
                             "--json", str(summary)], stderr=subprocess.PIPE, text=True)
    try:
        seen = 0
        for line in proc.stderr:  # one status line per frame at first, then every 0.5 s
            if line.startswith("frame"):
                seen += 1
                if seen == 3:
                    break
        proc.send_signal(sig)
        rest = proc.communicate(timeout=120)[1]
    finally:
        proc.kill()
    assert proc.returncode == status, rest
    assert "Traceback" not in rest and f"stopped by {sig.name}" in rest
    result = json.loads(summary.read_text())
    assert result["stopped_by"] == sig.name and 0 < result["frames"] < 795  # stopped before the clip's end
    assert decoded_frames(video) == result["frames"]  # every processed frame is in a playable file


def _file_size_limit(limit):
    def apply():
        # a full disk as the process sees it: write() fails with EFBIG instead of a signal killing it
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_full_disk_ends_run_with_one_line_and_keeps_video_playable(tmp_path):
    video = tmp_path / "out.mp4"
    # half resolution: the model runs 4x faster and the limit is reached after about 40 frames all the same
    out = subprocess.run([*PYTHON, "run", "--input", "vtest", "--input-width", "384", "--headless",
                          "--output", str(video), "--max-frames", "300"], capture_output=True, text=True,
                         timeout=600, preexec_fn=_file_size_limit(150_000))
    assert out.returncode == 2, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"passrt: error: cannot write {video}: the file size limit was reached; stopped after")
    assert "Traceback" not in out.stderr
    written = int(last.split("stopped after ")[1].split()[0])
    assert 0 < written < 300 and os.path.getsize(video) <= 150_000
    # Complete fragments decode: at least the first second (10 frames), at most what was written.
    assert 10 <= decoded_frames(video) <= written


def test_outputs_checked_before_the_model_loads(tmp_path):
    clip = write_clip(tmp_path / "clip.avi", frames=5)
    before = clip.read_bytes()
    # --model yolo would fail at load time: the output error must come first.
    out = passrt("run", "--input", str(clip), "--headless", "--output", str(clip), "--model", "yolo")
    assert out.returncode == 2 and "is the input; writing it would destroy it" in out.stderr
    assert clip.read_bytes() == before
    out = passrt("run", "--input", str(clip), "--headless", "--json", str(tmp_path / "clip.avi"))
    assert out.returncode == 2 and "is the input" in out.stderr
    out = passrt("run", "--input", str(clip), "--headless", "--output", str(tmp_path / "a.mp4"),
                 "--json", str(tmp_path / "a.mp4"))
    assert out.returncode == 2 and "--output's file" in out.stderr
    (tmp_path / "file").write_text("")
    out = passrt("bench", "--input", str(clip), "--json", str(tmp_path / "file" / "b.json"))
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr
    out = passrt("run", "--input", str(clip), "--headless", "--output", str(tmp_path / "out.mkv"))
    assert out.returncode == 2 and "use a .mp4 or .avi" in out.stderr


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux's /proc")
def test_unwritable_json_directory_fails_before_bench_runs(tmp_path):
    # /proc/self is a directory nobody can create files in, root included (a read-only mount acts alike)
    out = passrt("bench", "--input", "carphone", "--frames", "3", "--json", "/proc/self/bench.json")
    assert out.returncode == 2 and "is not writable" in out.stderr and "Traceback" not in out.stderr
    assert "x dense" not in out.stdout  # nothing was measured


@pytest.mark.parametrize("args,message", [
    (["run", "--input", "carphone", "--headless", "--max-frames", "0"], "--max-frames must be at least 1, got 0"),
    (["run", "--input", "carphone", "--headless", "--max-frames", "-3"], "--max-frames must be at least 1, got -3"),
    (["run", "--camera", "-1", "--headless"], "--camera must be a camera index, 0 or more, got -1"),
    (["run", "--input", "carphone", "--headless", "--score-threshold", "1.5"], "--score-threshold must be between"),
    (["run", "--input", "carphone", "--headless", "--reconnect-timeout", "0"], "--reconnect-timeout must be"),
    (["bench", "--input", "carphone", "--frames", "-2"], "--frames must be at least 1, got -2"),
    (["bench", "--input", "carphone", "--warmup", "-1"], "--warmup must be 0 or more, got -1"),
])
def test_bad_numbers_one_line(args, message):
    out = passrt(*args)
    assert out.returncode == 2 and out.stderr.strip().startswith("passrt: error: ") and message in out.stderr
    assert out.stderr.strip().count("\n") == 0, out.stderr


def test_credentials_masked_in_status_errors_and_json(tmp_path):
    write_clip(tmp_path / "clip.avi", frames=8, size=(160, 120))
    server, base = serve_directory(tmp_path)  # ignores the credentials, as a camera with auth off would
    try:
        uri = base.replace("http://", "http://admin:s3cret@") + "/clip.avi"
        out = passrt("run", "--input", uri, "--headless", "--json", str(tmp_path / "run.json"),
                     "--policy", "exact")
    finally:
        server.shutdown()
    assert out.returncode == 0, out.stderr
    summary = (tmp_path / "run.json").read_text()
    assert json.loads(summary)["frames"] == 8  # a file over HTTP: every frame
    assert "s3cret" not in summary and "s3cret" not in out.stdout + out.stderr and "***@" in summary
    out = passrt("run", "--input", "rtsp://admin:s3cret@127.0.0.1:9/live", "--headless")
    assert out.returncode == 2 and "s3cret" not in out.stdout + out.stderr and "rtsp://***@127.0.0.1:9" in out.stderr
