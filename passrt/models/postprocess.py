"""SSD box decoding and non-maximum suppression."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SCALES = (10.0, 10.0, 5.0, 5.0)  # TF box coder scales for (ty, tx, th, tw)


@dataclass
class Detections:
    boxes: np.ndarray  # (N, 4) float32, pixels, (x1, y1, x2, y2)
    scores: np.ndarray  # (N,) float32, descending


def decode_boxes(encodings: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """(A, 4) (ty, tx, th, tw) relative to (A, 4) anchors -> normalised (ymin, xmin, ymax, xmax)."""
    ay0, ax0, ay1, ax1 = anchors.T
    ah, aw = ay1 - ay0, ax1 - ax0
    ay, ax = ay0 + ah / 2, ax0 + aw / 2
    ty, tx, th, tw = (encodings / np.array(SCALES, dtype=np.float32)).T
    yc, xc = ty * ah + ay, tx * aw + ax
    h, w = np.exp(th) * ah, np.exp(tw) * aw
    return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], 1)


def detect(box_encodings, class_logits, anchors: np.ndarray, image_hw: tuple[int, int],
           score_threshold: float = 0.3, iou_threshold: float = 0.6, max_detections: int = 100) -> Detections:
    """Person detections in pixel coordinates from one image's raw outputs."""
    enc = _numpy(box_encodings).reshape(-1, 4)
    logits = _numpy(class_logits).reshape(enc.shape[0], -1)
    scores = 1.0 / (1.0 + np.exp(-logits[:, 1]))
    keep = scores >= score_threshold
    if not keep.any():
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
    boxes = decode_boxes(enc[keep], anchors[keep])
    scores = scores[keep]
    h, w = image_hw
    xyxy = np.stack([boxes[:, 1] * w, boxes[:, 0] * h, boxes[:, 3] * w, boxes[:, 2] * h], 1)
    xyxy = np.clip(xyxy, 0, [w, h, w, h]).astype(np.float32)
    xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)
    idx = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), score_threshold, iou_threshold),
                     dtype=np.int64).reshape(-1)
    idx = idx[np.argsort(-scores[idx], kind="stable")][:max_detections]
    return Detections(xyxy[idx], scores[idx].astype(np.float32))


def _numpy(t) -> np.ndarray:
    if hasattr(t, "detach"):
        t = t.detach().cpu().numpy()
    return np.asarray(t, dtype=np.float32)
