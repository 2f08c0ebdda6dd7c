"""Snapshots, the recomputed-tiles overlay of a chosen layer, and a file played in a loop."""

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
    # The overlay tints recomputed tiles red: the tinted share is the first layer's active share,
    # neither nothing (the camera moves) nor everything (a mask, not a blanket).
    plain = passrt("run", "--input", "carphone", "--headless", "--max-frames", "50",
                   "--policy", "exact:threshold=0.05", "--snapshot", str(tmp_path / "plain"), "--snapshot-every", "50")
    assert plain.returncode == 0, plain.stderr
    base = cv2.imread(str(tmp_path / "plain" / "frame000050.png")).astype(int)
    redder = (image[..., 2].astype(int) - base[..., 2] > 8) & (base[..., 0] - image[..., 0].astype(int) > 8)
    assert 0.02 < redder.mean() < 0.98


def test_snapshot_dir_checked_up_front(tmp_path):
    (tmp_path / "file").write_text("")
    out = passrt("run", "--input", "carphone", "--headless", "--snapshot", str(tmp_path / "file"))
    assert out.returncode == 2 and "exists and is not a directory" in out.stderr
    out = passrt("run", "--input", "carphone", "--headless", "--input-loop", "-2")
    assert out.returncode == 2 and "--input-loop must be" in out.stderr
    assert np.all([line.startswith("passrt: error:") for line in out.stderr.strip().splitlines()])
