"""Detection agreement: VOC-style average precision of one engine's detections against another's.

``average_precision(predictions, ground_truth)``: predictions are (boxes (N, 4) xyxy,
scores (N,)) per frame, ground truth boxes (M, 4) per frame. All predictions are ranked by
score across frames; each is matched greedily to the unmatched ground-truth box of highest
IoU >= the threshold in its own frame; AP is the area under the precision envelope
(all-point interpolation). Conventions: no ground truth and no predictions -> 1.0 (perfect
agreement on "nothing"); no ground truth but predictions -> 0.0; ground truth but no
predictions -> 0.0.
"""

from __future__ import annotations

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def average_precision(predictions, ground_truth, iou_threshold: float = 0.5) -> float:
    n_gt = sum(len(np.asarray(g).reshape(-1, 4)) for g in ground_truth)
    ranked = [(float(s), f, i) for f, (boxes, scores) in enumerate(predictions)
              for i, s in enumerate(np.asarray(scores).reshape(-1))]
    if n_gt == 0:
        return 1.0 if not ranked else 0.0
    if not ranked:
        return 0.0
    ranked.sort(key=lambda t: -t[0])
    ious = [iou_matrix(np.asarray(b).reshape(-1, 4), np.asarray(g).reshape(-1, 4))
            for (b, _), g in zip(predictions, ground_truth)]
    used = [np.zeros(iou.shape[1], bool) for iou in ious]
    tp = np.zeros(len(ranked))
    for k, (_, f, i) in enumerate(ranked):
        row = np.where(used[f], -1.0, ious[f][i]) if ious[f].shape[1] else np.zeros(0)
        if row.size and row.max() >= iou_threshold:
            used[f][int(row.argmax())] = True
            tp[k] = 1
    cum_tp = np.cumsum(tp)
    recall = cum_tp / n_gt
    precision = cum_tp / np.arange(1, len(ranked) + 1)
    # Precision envelope (monotone non-increasing from the right), then area under it.
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))
