"""`passrt run --track` and `passrt bench --track` end to end on the real clip and detector."""

import json

# `make install` installs the track extra: a missing package is a failure, not a skip
import motmetrics  # noqa: F401
import numpy as np
import trackers  # noqa: F401

from tests.cli.test_cli import passrt


def test_run_writes_motchallenge_tracks(tmp_path):
    out = passrt("run", "--input", "vtest", "--headless", "--max-frames", "20", "--track", "bytetrack",
                 "--tracks", str(tmp_path / "t.txt"), "--json", str(tmp_path / "run.json"))
    assert out.returncode == 0, out.stderr
    rows = np.loadtxt(tmp_path / "t.txt", delimiter=",", ndmin=2)
    assert rows.shape[1] == 10 and (rows[:, 7:] == -1).all()
    assert rows[:, 0].min() >= 1 and rows[:, 0].max() <= 20  # frames, 1-based
    assert (rows[:, 4:6] > 0).all() and (rows[:, 6] >= 0.3).all()  # w, h; scores at the display threshold
    # vtest shows several pedestrians walking: several tracks, each seen on many frames
    ids, counts = np.unique(rows[:, 1], return_counts=True)
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["tracking"]["tracks"] == len(ids) >= 3 and counts.max() >= 15


def test_bench_reports_tracking_agreement_with_dense(tmp_path):
    out = passrt("bench", "--input", "vtest", "--frames", "20", "--warmup", "1", "--no-onnxruntime",
                 "--policies", "dense,regiondrop", "--track", "bytetrack", "--json", str(tmp_path / "b.json"))
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "b.json").read_text())
    dense, sparse = result["policies"]["dense"]["tracking"], result["policies"]["regiondrop"]["tracking"]
    assert result["tracker"] == "bytetrack"
    assert dense["mota"] == dense["idf1"] == 1.0 and dense["num_switches"] == 0 and dense["num_objects"] > 0
    assert sparse["num_objects"] == dense["num_objects"]  # the same ground truth for every engine
    assert 0.5 < sparse["mota"] <= 1 and 0.5 < sparse["idf1"] <= 1  # regiondrop follows dense closely
    assert "MOTA" in out.stdout and "IDsw" in out.stdout


def test_tracks_needs_track():
    out = passrt("run", "--input", "vtest", "--headless", "--tracks", "t.txt")
    assert out.returncode == 2 and "--tracks needs --track" in out.stderr
