"""SSD box decoding and non-maximum suppression, as TF's Object Detection API post-processes SSDLite.

TF's order: decode every box (``FasterRcnnBoxCoder``, scales 10, 10, 5, 5), sigmoid scores,
drop scores below the threshold, clip the boxes to the image (dropping those clipped to
nothing), then NMS (a box is suppressed when its IoU with a higher-scoring kept box is above
the threshold), then keep the best ``max_detections``. IoU does not change when x and y are
scaled separately, so NMS in pixels gives the same result as TF's in normalised coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

SCALES = (10.0, 10.0, 5.0, 5.0)  # TF box coder scales for (ty, tx, th, tw)


@dataclass
class Detections:
    boxes: np.ndarray  # (N, 4) float32, pixels, (x1, y1, x2, y2)
    scores: np.ndarray  # (N,) float32, descending

    def __len__(self) -> int:
        return len(self.scores)


@dataclass
class Keypoints:
    """Pose: per person, K points (x, y in pixels, visibility in [0, 1])."""

    points: np.ndarray  # (N, K, 3) float32

    def __len__(self) -> int:
        return len(self.points)


def decode_boxes(box_enc: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(A, 4) (ty, tx, th, tw) relative to (A, 4) anchors -> normalised (ymin, xmin, ymax, xmax)."""
    ay0, ax0, ay1, ax1 = np.asarray(anchors, dtype=np.float32).T
    ah, aw = ay1 - ay0, ax1 - ax0
    ay, ax = ay0 + ah / 2, ax0 + aw / 2
    ty, tx, th, tw = (np.asarray(box_enc, dtype=np.float32) / np.array(SCALES, dtype=np.float32)).T
    yc, xc = ty * ah + ay, tx * aw + ax
    h, w = np.exp(th) * ah, np.exp(tw) * aw
    return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], 1)


def detect(box_enc, class_logits, anchors: np.ndarray, image_hw: tuple[int, int],
           score_threshold: float = 0.3, iou_threshold: float = 0.6, max_detections: int = 100) -> Detections:
    """Person detections in pixel coordinates from one image's raw outputs (tensors or arrays).

    ``box_enc`` (A, 4) or (1, A, 4), ``class_logits`` (A, 2) or (1, A, 2) with column 1 the
    person logit; ``anchors`` (A, 4) for the size the network ran at; ``image_hw`` the size
    the pixel boxes refer to.
    """
    enc = to_numpy(box_enc).reshape(-1, 4)
    logits = to_numpy(class_logits).reshape(enc.shape[0], -1)[:, 1]
    if len(anchors) != len(enc):
        raise ValueError(f"{len(enc)} box encodings but {len(anchors)} anchors")
    # sigmoid(l) >= t  <=>  l >= logit(t): threshold first, and take sigmoids of the few kept.
    t = min(max(score_threshold, 1e-12), 1 - 1e-7)
    keep = np.flatnonzero(logits >= math.log(t / (1 - t)))
    if keep.size == 0:
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    scores = (1.0 / (1.0 + np.exp(-logits[keep].astype(np.float64)))).astype(np.float32)
    ymin, xmin, ymax, xmax = decode_boxes(enc[keep], anchors[keep]).T
    h, w = image_hw
    xyxy = np.stack([xmin * w, ymin * h, xmax * w, ymax * h], 1)
    xyxy = np.clip(xyxy, 0, [w, h, w, h]).astype(np.float32)
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])
    xyxy, scores = xyxy[area > 0], scores[area > 0]  # TF drops boxes clipped to nothing
    idx = nms(xyxy, scores, iou_threshold)[:max_detections]
    return Detections(xyxy[idx], scores[idx])


def nms(xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy NMS, by descending score (OpenCV's ``cv2.dnn.NMSBoxes``)."""
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1).astype(np.float64)
    # Float rectangles (Rect2d), so IoU is exact. The caller applied the score threshold
    # already (OpenCV requires one >= 0 and drops scores that are not above it).
    idx = cv2.dnn.NMSBoxes(xywh.tolist(), scores.astype(np.float64).tolist(), 0.0, iou_threshold)
    idx = np.asarray(idx, dtype=np.int64).reshape(-1)
    return idx[np.argsort(-scores[idx], kind="stable")]


def to_numpy(t) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu().numpy()
    return np.asarray(t, dtype=np.float32)
