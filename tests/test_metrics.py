"""Detection agreement (VOC AP) against hand-computed cases."""

import numpy as np
import pytest

from passrt.metrics import average_precision, iou_matrix

BOX = np.array([[0, 0, 10, 10]], np.float32)


def test_iou():
    assert iou_matrix(BOX, BOX)[0, 0] == 1.0
    assert iou_matrix(BOX, [[5, 0, 15, 10]])[0, 0] == pytest.approx(50 / 150)
    assert iou_matrix(BOX, [[20, 20, 30, 30]])[0, 0] == 0.0


def test_perfect_match():
    assert average_precision([(BOX, [0.9]), (BOX, [0.8])], [BOX, BOX]) == 1.0


def test_false_positive_ranked_first():
    # Ranked: FP (0.9), TP (0.8): precision 0, 1/2 at recall 0, 1 -> envelope 1/2 -> AP 0.5.
    preds = [(np.array([[50, 50, 60, 60], [0, 0, 10, 10]], np.float32), [0.9, 0.8])]
    assert average_precision(preds, [BOX]) == pytest.approx(0.5)


def test_missed_ground_truth_caps_recall():
    gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)]
    assert average_precision([(BOX, [0.9])], gt) == pytest.approx(0.5)


def test_iou_threshold_edges():
    just_below = np.array([[0, 0, 10, 6.6]], np.float32)  # IoU 0.66 with the 10x10 box: match
    assert average_precision([(just_below, [1.0])], [BOX]) == 1.0
    shifted = np.array([[3.4, 0, 13.4, 10]], np.float32)  # IoU 6.6/13.4 = 0.49: no match
    assert average_precision([(shifted, [1.0])], [BOX]) == 0.0


def test_empty_conventions():
    empty = np.zeros((0, 4), np.float32)
    assert average_precision([(empty, [])], [empty]) == 1.0
    assert average_precision([(BOX, [0.5])], [empty]) == 0.0
    assert average_precision([(empty, [])], [BOX]) == 0.0
