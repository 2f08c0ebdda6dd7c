"""Agreement of an engine with the dense engine: VOC-style average precision of its detections against
the dense ones, and the raw-output error (:class:`Agreement`).

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


PCK_ALPHA = 0.05  # a keypoint agrees when within this fraction of the person's size
PCK_VISIBLE = 0.5  # only keypoints the dense model sees (visibility above this) are scored


def pck_counts(points, truth, alpha: float = PCK_ALPHA, visible: float = PCK_VISIBLE) -> tuple[int, int]:
    """(agreeing, scored) keypoints of one frame: ``points`` and ``truth`` (N, K, 3) (x, y,
    visibility), persons in the same order. Scored: each truth keypoint visible above ``visible``;
    it agrees when the engine's point is within ``alpha`` x the person's size (the diagonal of the
    box around the truth's visible keypoints). A person the engine lost scores all misses."""
    truth, points = np.asarray(truth, np.float64), np.asarray(points, np.float64)
    agree = scored = 0
    for i, person in enumerate(truth):
        seen = person[:, 2] > visible
        if not seen.any():
            continue
        xy = person[seen, :2]
        size = float(np.hypot(*(xy.max(0) - xy.min(0))))
        scored += int(seen.sum())
        if i < len(points):
            dist = np.hypot(*(points[i][seen, :2] - xy).T)
            agree += int((dist <= alpha * max(size, 1.0)).sum())
    return agree, scored


LOW_SCORE = 0.05  # detections are ranked down to this score for the standard AP (as COCO-style evaluators do)


class Agreement:
    """How closely one engine follows the dense engine, frame by frame, on the same frames.

    Two detection figures, both AP@``iou`` with the dense detections at the display threshold
    as ground truth: ``ap50`` ranks the engine's detections down to :data:`LOW_SCORE` (the
    standard way: a person whose score moves from 0.31 to 0.29 is ranked lower, not lost), and
    ``ap50_display`` keeps only those at the display threshold (the figure passrt reported
    before). For pose, ``pck``: the share of the dense model's visible keypoints that the engine
    puts within 5 % of the person's size (:func:`pck_counts`). And the raw-output error, for any
    model, task head or not: per output, the max and the mean over frames of ``|engine - dense|``
    (max and mean over the output's elements).
    """

    def __init__(self, display_threshold: float = 0.3, iou: float = 0.5):
        self.display_threshold, self.iou = display_threshold, iou
        self.ranked: list = []  # (boxes, scores) per frame, scores >= LOW_SCORE
        self.truth: list = []  # dense boxes at the display threshold, per frame
        self._max: list = []  # per output: max |error| over frames so far
        self._sum: list = []  # per output: sum over frames of the mean |error|
        self.frames_compared = 0
        self._pck = [0, 0]  # agreeing, scored keypoints over all frames
        self._pose_frames = 0

    def add_detections(self, boxes, scores, dense_boxes) -> None:
        """One frame: the engine's detections down to LOW_SCORE, the dense ones at the display threshold."""
        self.ranked.append((np.asarray(boxes).reshape(-1, 4), np.asarray(scores).reshape(-1)))
        self.truth.append(np.asarray(dense_boxes).reshape(-1, 4))

    def add_outputs(self, outputs, dense_outputs) -> None:
        """One frame's raw outputs (arrays or CPU tensors, one or a sequence) against the dense engine's."""
        outputs, dense_outputs = _as_list(outputs), _as_list(dense_outputs)
        if not self._max:
            self._max, self._sum = [0.0] * len(outputs), [0.0] * len(outputs)
        for i, (a, b) in enumerate(zip(outputs, dense_outputs)):
            err = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
            self._max[i] = max(self._max[i], float(err.max()) if err.size else 0.0)
            self._sum[i] += float(err.mean()) if err.size else 0.0
        self.frames_compared += 1

    def add_keypoints(self, points, dense_points) -> None:
        """One frame's keypoints (N, K, 3) against the dense engine's."""
        agree, scored = pck_counts(points, dense_points)
        self._pck[0] += agree
        self._pck[1] += scored
        self._pose_frames += 1

    def pck(self):
        """PCK over all frames; None when the dense model saw no keypoint at all (nothing to agree on)."""
        return self._pck[0] / self._pck[1] if self._pck[1] else None

    def ap50(self) -> float:
        return average_precision(self.ranked, self.truth, self.iou)

    def ap50_display(self) -> float:
        shown = [(b[s >= self.display_threshold], s[s >= self.display_threshold]) for b, s in self.ranked]
        return average_precision(shown, self.truth, self.iou)

    def output_error(self) -> dict:
        """{"max": [per output], "mean": [per output]} (empty lists before any frame)."""
        n = max(self.frames_compared, 1)
        return {"max": list(self._max), "mean": [s / n for s in self._sum]}

    def summary(self) -> dict:
        out = {"output_error": self.output_error()}
        if self.ranked:
            out.update(agreement_ap50=self.ap50(), agreement_ap50_display=self.ap50_display())
        if self._pose_frames:
            out.update(agreement_pck=self.pck(), keypoints_scored=self._pck[1])
        return out


def _as_list(outputs) -> list:
    return list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
