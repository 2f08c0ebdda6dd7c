"""Snapshots, the recomputed-tiles heatmap of a chosen layer, and a file played in a loop."""

import json

import cv2
import numpy as np

from tests.cli.test_cli import passrt


def test_snapshots_tiles_overlay_and_input_loop(tmp_path):
    # carphone has 120 frames: 130 means the second pass ran (--input-loop 1)
    out = passrt("run", "--input", "carphone", "--headless", "--max-frames", "130", "--input-loop", "1",
                 "--policy", "exact:threshold=0.05", "--snapshot", str(tmp_path / "snaps"), "--snapshot-every", "50",
                 "--show-tiles", "--tiles-layer", "0", "--json", str(tmp_path / "run.json"))
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "run.json").read_text())["frames"] == 130
    names = sorted(p.name for p in (tmp_path / "snaps").iterdir())
    assert names == ["frame000001.png", "frame000050.png", "frame000100.png", "frame000130.png"]
    image = cv2.imread(str(tmp_path / "snaps" / "frame000050.png"))
    assert image.shape == (144, 176, 3)
    # The heatmap colours the tiles recomputed lately, in proportion to how often: neither nothing (the
    # camera moves) nor everything, and graded (several levels, not one tint). The status text
    # (top left, its FPS differs between runs) and the legend (bottom left) are left out.
    plain = passrt("run", "--input", "carphone", "--headless", "--max-frames", "50",
                   "--policy", "exact:threshold=0.05", "--snapshot", str(tmp_path / "plain"), "--snapshot-every", "50")
    assert plain.returncode == 0, plain.stderr
    base = cv2.imread(str(tmp_path / "plain" / "frame000050.png")).astype(int)
    change = np.abs(image.astype(int) - base).sum(axis=2)[48:-34]
    assert 0.02 < (change > 24).mean() < 0.98
    assert len(np.unique(change[change > 24] // 40)) >= 4


def test_heatmap_picture_of_a_chosen_layer(tmp_path):
    out = passrt("run", "--input", "vtest", "--headless", "--max-frames", "12", "--show-tiles", "--tiles-layer", "-1",
                 "--tiles-window", "4", "--snapshot", str(tmp_path), "--snapshot-every", "12")
    assert out.returncode == 0, out.stderr
    assert cv2.imread(str(tmp_path / "frame000012.png")).shape == (576, 768, 3)
    out = passrt("run", "--input", "vtest", "--headless", "--show-tiles", "--tiles-window", "0")
    assert out.returncode == 2 and "--tiles-window must be at least 1" in out.stderr
    out = passrt("run", "--input", "vtest", "--headless", "--max-frames", "2", "--show-tiles", "--tiles-layer", "nope",
                 "--snapshot", str(tmp_path / "s"))
    assert out.returncode == 2 and "--tiles-layer nope: no such layer" in out.stderr


def test_snapshot_dir_checked_up_front(tmp_path):
    (tmp_path / "file").write_text("")
    out = passrt("run", "--input", "carphone", "--headless", "--snapshot", str(tmp_path / "file"))
    assert out.returncode == 2 and "exists and is not a directory" in out.stderr
    out = passrt("run", "--input", "carphone", "--headless", "--input-loop", "-2")
    assert out.returncode == 2 and "--input-loop must be" in out.stderr
    assert np.all([line.startswith("passrt: error:") for line in out.stderr.strip().splitlines()])
