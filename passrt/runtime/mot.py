"""Tracks in MOTChallenge text format, and how well one set of tracks follows another.

Format (MOT15/16 "det/gt" text, one box per line, frames from 1):
``frame,id,x,y,w,h,conf,-1,-1,-1`` with (x, y) the top-left corner in pixels.

Metrics come from ``motmetrics`` (CLEAR MOT's MOTA and ID switches, IDF1); its own IoU helper
calls ``np.asfarray``, which NumPy 2 removed, so the IoU distance matrix is computed here and
handed to its accumulator. Protocol: the sparse engine's tracks against the dense engine's
tracks taken as ground truth (DeltaCNN's and CBinfer's accuracy-vs-dense), IoU >= 0.5 a match.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from passrt.errors import PassrtError


class MotWriter:
    """Appends one frame's tracks at a time (line-buffered: a stopped run keeps every frame it wrote)."""

    def __init__(self, path: str):
        try:
            self.file = open(path, "w", buffering=1)
        except OSError as e:
            raise PassrtError(f"cannot write tracks {path}: {e.strerror}") from None
        self.path = path

    def write(self, frame: int, ids, boxes, scores) -> None:
        """``frame``: 0-based (written 1-based, as MOTChallenge counts); ``boxes``: (N, 4) x1, y1, x2, y2."""
        lines = [f"{frame + 1},{int(i)},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{s:.4f},-1,-1,-1\n"
                 for i, (x1, y1, x2, y2), s in zip(ids, np.asarray(boxes, np.float64), scores)]
        try:
            self.file.writelines(lines)
        except OSError as e:
            raise PassrtError(f"cannot write tracks {self.path}: {e.strerror}") from None

    def close(self) -> None:
        try:
            self.file.close()
        except OSError as e:
            raise PassrtError(f"cannot write tracks {self.path}: {e.strerror}") from None


def read_mot(path: str, min_confidence: float | None = None) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """frame (as written, 1-based) -> (ids (N,), boxes (N, 4) x, y, w, h); ``min_confidence`` drops
    lines below it (MOT15 ground truth marks boxes to ignore with confidence 0)."""
    rows = np.loadtxt(path, delimiter=",", ndmin=2) if Path(path).stat().st_size else np.zeros((0, 10))
    if min_confidence is not None:
        rows = rows[rows[:, 6] >= min_confidence]
    return {int(f): (rows[rows[:, 0] == f, 1].astype(int), rows[rows[:, 0] == f, 2:6])
            for f in np.unique(rows[:, 0])}


def iou_distance(a: np.ndarray, b: np.ndarray, max_distance: float = 0.5) -> np.ndarray:
    """1 - IoU between boxes ``a`` (N, 4) and ``b`` (M, 4), both x, y, w, h; NaN (no match possible)
    where it exceeds ``max_distance`` (motmetrics' convention)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.empty((len(a), len(b)))
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, :2] + a[:, None, 2:], b[None, :, :2] + b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    union = np.prod(a[:, 2:], 1)[:, None] + np.prod(b[:, 2:], 1)[None, :] - inter
    dist = 1 - inter / np.where(union > 0, union, 1)
    dist[dist > max_distance] = np.nan
    return dist


def tracking_agreement(truth: dict, tracks: dict, max_distance: float = 0.5) -> dict:
    """MOTA, IDF1, ID switches (and the counts behind them) of ``tracks`` against ``truth``, both
    as :func:`read_mot` returns them (frame -> (ids, x-y-w-h boxes)); frames missing from one side
    count as frames with no boxes."""
    try:
        import motmetrics as mm
    except ImportError:
        raise PassrtError("tracking metrics need motmetrics: pip install 'passrt[track]'") from None
    acc = mm.MOTAccumulator(auto_id=False)
    empty = (np.zeros(0, int), np.zeros((0, 4)))
    for frame in sorted(set(truth) | set(tracks)):
        (gt_ids, gt_boxes), (ids, boxes) = truth.get(frame, empty), tracks.get(frame, empty)
        acc.update(list(gt_ids), list(ids), iou_distance(gt_boxes, boxes, max_distance), frameid=frame)
    names = ["mota", "motp", "idf1", "num_switches", "num_false_positives", "num_misses", "num_objects",
             "num_unique_objects", "precision", "recall"]
    row = mm.metrics.create().compute(acc, metrics=names, name="tracks").iloc[0]
    out = {k: float(row[k]) for k in names}
    for k in ("num_switches", "num_false_positives", "num_misses", "num_objects", "num_unique_objects"):
        out[k] = int(out[k])
    return out
