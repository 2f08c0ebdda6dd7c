"""`passrt bench` stopped by SIGTERM/SIGINT: a clean end, the results so far printed and in --json."""

import json
import signal
import subprocess
import sys
import time

import pytest

from passrt.policies import PolicySpec
from passrt.runtime.bench import run_benchmark

PYTHON = [sys.executable, "-m", "passrt"]


class StopAfter:
    """An Event-like stop that turns on at its ``n``-th check (the CLI's is set by a signal handler)."""

    signal_name = "SIGTERM"

    def __init__(self, n):
        self.n, self.checks = n, 0

    def is_set(self):
        self.checks += 1
        return self.checks >= self.n


def test_a_stop_mid_block_keeps_the_complete_blocks_for_every_engine():
    # Two engines, warm-up 1: about 24 checks cover the first block of 10 frames; the 35th falls in the
    # second block (dense has run some of its frames): that partial block is dropped for everyone.
    result = run_benchmark("carphone", "ssdlite-pedestrian", [PolicySpec.parse("regiondrop")], frames=40, warmup=1,
                           onnxruntime=False, progress=False, stop=StopAfter(35))
    assert result["stopped_by"] == "SIGTERM" and result["frames"] == 10
    for entry in result["policies"].values():
        assert len(entry["per_frame"]["latency_ms"]) == 10
    assert result["policies"]["dense"]["agreement_ap50"] == 1.0
    nothing = run_benchmark("carphone", "ssdlite-pedestrian", [], frames=20, warmup=1, onnxruntime=False,
                            progress=False, stop=StopAfter(1))
    assert nothing["frames"] == 0 and nothing["policies"] == {} and nothing["stopped_by"] == "SIGTERM"


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_to_a_real_bench_writes_what_was_measured(tmp_path, sig, status):
    summary = tmp_path / "bench.json"
    proc = subprocess.Popen([*PYTHON, "bench", "--input", "vtest", "--frames", "700", "--warmup", "1",
                             "--policies", "dense,regiondrop", "--no-onnxruntime", "--json", str(summary)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(45)  # model load, warm-up, some blocks (all 700 frames take minutes)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(sig)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=120)
        waited = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == status, err
    assert "Traceback" not in err and f"stopped by {sig.name}" in err
    assert waited < 30  # after the current frame, not after the current block or the whole run
    result = json.loads(summary.read_text())
    assert result["stopped_by"] == sig.name and result["frames"] < 700 and result["frames"] % 10 == 0
    if result["frames"]:  # what was measured is printed and written, the same frames for every engine
        assert "regiondrop" in out and f"{result['frames']} of 700 frames" in err
        assert [len(e["per_frame"]["latency_ms"]) for e in result["policies"].values()] == [result["frames"]] * 2
