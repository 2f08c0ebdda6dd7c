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


def test_pck_counts_scores_the_dense_visible_keypoints():
    from passrt.metrics import pck_counts

    truth = np.zeros((1, 4, 3))
    truth[0, :, :2] = [[0, 0], [30, 40], [0, 40], [30, 0]]  # a 30 x 40 box: size 50, 5 % = 2.5 px
    truth[0, :, 2] = [0.9, 0.9, 0.9, 0.1]  # the last one is not visible: not scored
    engine = truth.copy()
    engine[0, 0, :2] += [2.0, 0.0]  # within 2.5 px
    engine[0, 1, :2] += [0.0, 3.0]  # not
    engine[0, 3, :2] += [99.0, 99.0]  # not scored
    assert pck_counts(engine, truth) == (2, 3)
    assert pck_counts(np.zeros((0, 4, 3)), truth) == (0, 3)  # the person was lost
    assert pck_counts(engine, np.zeros((0, 4, 3))) == (0, 0)  # nobody to agree on


def test_agreement_pck_is_none_without_keypoints():
    from passrt.metrics import Agreement

    a = Agreement()
    a.add_keypoints(np.zeros((0, 33, 3)), np.zeros((0, 33, 3)))
    assert a.summary()["agreement_pck"] is None and a.summary()["keypoints_scored"] == 0
