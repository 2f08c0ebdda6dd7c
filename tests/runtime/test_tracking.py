"""Tracking and tracking metrics: the metric code on the MOT15 ground truth shipped in motmetrics'
wheel, MOTChallenge files, and the tracker on boxes whose identities are known."""

import os

import numpy as np
import pytest

# `make install` installs the track extra: a missing package is a failure, not a skip
import motmetrics as mm  # noqa: E402
import trackers  # noqa: E402,F401

from passrt.errors import PassrtError  # noqa: E402
from passrt.runtime.mot import MotWriter, iou_distance, read_mot, tracking_agreement  # noqa: E402
from passrt.runtime.tracking import Tracker, track_sequence  # noqa: E402

DATA = os.path.join(os.path.dirname(mm.__file__), "data")

# py-motmetrics' README lists these for its bundled MOT15 sequences (test.txt, a tracker's output,
# against gt.txt, IoU distance 0.5): an independent reference for our IoU matrix + accumulator.
PUBLISHED = {  # sequence: MOTA, IDF1, ID switches, false positives, misses, MOTP
    "TUD-Campus": (0.526, 0.558, 7, 13, 150, 0.277),
    "TUD-Stadtmitte": (0.564, 0.645, 7, 45, 452, 0.346),
}


@pytest.mark.parametrize("sequence", sorted(PUBLISHED))
def test_metrics_on_mot15_ground_truth_match_motmetrics_published_figures(sequence):
    truth = read_mot(os.path.join(DATA, sequence, "gt.txt"), min_confidence=1)
    tracks = read_mot(os.path.join(DATA, sequence, "test.txt"))
    out = tracking_agreement(truth, tracks)
    mota, idf1, switches, fp, misses, motp = PUBLISHED[sequence]
    assert out["mota"] == pytest.approx(mota, abs=5e-4) and out["idf1"] == pytest.approx(idf1, abs=5e-4)
    assert (out["num_switches"], out["num_false_positives"], out["num_misses"]) == (switches, fp, misses)
    assert out["motp"] == pytest.approx(motp, abs=5e-4)
    perfect = tracking_agreement(truth, truth)
    assert perfect["mota"] == perfect["idf1"] == 1.0 and perfect["num_switches"] == 0


def test_iou_distance_against_a_direct_computation():
    rng = np.random.default_rng(1)
    a = np.column_stack([rng.uniform(0, 50, (7, 2)), rng.uniform(1, 30, (7, 2))])
    b = np.column_stack([rng.uniform(0, 50, (5, 2)), rng.uniform(1, 30, (5, 2))])
    got = iou_distance(a, b, max_distance=1.0)
    for i, (x, y, w, h) in enumerate(a):
        for j, (u, v, p, q) in enumerate(b):
            iw, ih = max(0, min(x + w, u + p) - max(x, u)), max(0, min(y + h, v + q) - max(y, v))
            assert got[i, j] == pytest.approx(1 - iw * ih / (w * h + p * q - iw * ih))
    assert np.isnan(iou_distance(a, b, 0.5)[got > 0.5]).all()
    assert iou_distance(a, np.zeros((0, 4))).shape == (7, 0)


def test_mot_file_roundtrip(tmp_path):
    writer = MotWriter(str(tmp_path / "t.txt"))
    writer.write(0, [1, 2], [[10, 20, 50, 80], [0, 0, 5, 5]], [0.9, 0.4])
    writer.write(2, [1], [[12, 20, 52, 80]], [0.8])
    writer.close()
    tracks = read_mot(str(tmp_path / "t.txt"))
    assert sorted(tracks) == [1, 3]  # 1-based frames
    ids, boxes = tracks[1]
    assert ids.tolist() == [1, 2] and np.allclose(boxes[0], [10, 20, 40, 60])


def walkers(frames=30):
    """Two people walking towards each other on separate rows: identities known."""
    return [(np.array([[10 + 4 * f, 50, 40 + 4 * f, 130], [200 - 4 * f, 150, 230 - 4 * f, 230]], np.float32),
             np.array([0.9, 0.8], np.float32)) for f in range(frames)]


def test_bytetrack_keeps_identities_and_the_metric_sees_a_swap():
    tracks = track_sequence("bytetrack", walkers())
    ids = [tuple(tracks[f][0].tolist()) for f in sorted(tracks) if len(tracks[f][0])]
    assert len(ids) >= 28 and len({i for pair in ids for i in pair}) == 2  # two tracks, held throughout
    assert min(min(pair) for pair in ids) >= 1  # MOTChallenge numbering
    # The same boxes with the two identities exchanged half-way: two ID switches, MOTA below 1.
    swapped = {f: ((ids_[::-1] if f > 15 else ids_), boxes) for f, (ids_, boxes) in tracks.items()}
    out = tracking_agreement(tracks, swapped)
    assert out["num_switches"] == 2 and out["mota"] < 1 and out["idf1"] < 1


def test_tracker_errors():
    with pytest.raises(PassrtError, match="unknown tracker 'deepsort'"):
        Tracker("deepsort")
    ids, boxes, scores = Tracker("bytetrack").update(np.zeros((0, 4)), np.zeros(0))
    assert len(ids) == len(boxes) == len(scores) == 0
