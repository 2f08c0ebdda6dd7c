"""Drawing detections, a text overlay and the recomputed tiles as a heatmap over time. Inputs are never
modified."""

from __future__ import annotations

import cv2
import numpy as np


def draw_detections(image: np.ndarray, boxes: np.ndarray, scores: np.ndarray,
                    color=(0, 255, 0)) -> np.ndarray:
    out = image.copy()
    for (x1, y1, x2, y2), s in zip(np.asarray(boxes).astype(int), scores):
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        cv2.putText(out, f"{s:.2f}", (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)
    return out


# BlazePose's 33 body keypoints: the limbs and torso to draw between them.
POSE_EDGES = [(11, 12), (11, 13), (13, 15), (12, 14), (14, 16), (11, 23), (12, 24), (23, 24), (23, 25), (25, 27),
              (24, 26), (26, 28), (27, 29), (29, 31), (28, 30), (30, 32), (0, 11), (0, 12)]


def draw_keypoints(image: np.ndarray, points: np.ndarray, visible: float = 0.5, color=(0, 200, 255)) -> np.ndarray:
    """(N, K, 3) keypoints (x, y, visibility): visible points as dots, with the skeleton between them."""
    out = image.copy()
    for person in np.asarray(points):
        shown = person[:, 2] > visible
        xy = person[:, :2].round().astype(int)
        for a, b in POSE_EDGES:
            if a < len(person) and b < len(person) and shown[a] and shown[b]:
                cv2.line(out, tuple(xy[a]), tuple(xy[b]), color, 2, cv2.LINE_AA)
        for (x, y), s in zip(xy, shown):
            if s:
                cv2.circle(out, (int(x), int(y)), 3, (0, 0, 255), -1, cv2.LINE_AA)
    return out


def draw_region(image: np.ndarray, x0: float, y0: float, side: float, color=(255, 160, 0)) -> np.ndarray:
    """The square a model input was cut from (a pose model's held person crop), as a thin frame."""
    out = image.copy()
    cv2.rectangle(out, (int(round(x0)), int(round(y0))), (int(round(x0 + side)), int(round(y0 + side))), color, 1,
                  cv2.LINE_AA)
    return out


def draw_overlay(image: np.ndarray, lines: list[str]) -> np.ndarray:
    out = image.copy()
    if not lines:
        return out
    height = 20 * len(lines) + 8
    width = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)[0][0] for t in lines) + 12
    region = out[:height, :width]
    region[:] = (region * 0.35).astype(out.dtype)  # darken behind the text for contrast
    for i, text in enumerate(lines):
        cv2.putText(out, text, (6, 20 * i + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


class TileHeat:
    """How often each tile of one layer was recomputed lately: a moving average of its tile masks over
    about ``window`` frames (exponential, weight 1/``window`` on the newest; 1: the last frame alone).
    One per stream; a new tile grid (another resolution, another layer) starts it afresh."""

    def __init__(self, window: int = 30):
        if window < 1:
            raise ValueError(f"window must be at least 1 frame, got {window}")
        self.window = window
        self.heat: np.ndarray | None = None

    def update(self, tile_mask: np.ndarray) -> np.ndarray:
        mask = np.asarray(tile_mask, dtype=np.float32)
        if self.heat is None or self.heat.shape != mask.shape:
            self.heat = mask.copy()
        else:
            self.heat += (mask - self.heat) / self.window
        return self.heat


def draw_heatmap(image: np.ndarray, heat: np.ndarray, alpha: float = 0.6, legend: str | None = None) -> np.ndarray:
    """The paper's Figure 1: each tile coloured by ``heat`` in [0, 1] (the share of recent frames that
    recomputed it; colour map 'inferno', dark to yellow), blended in proportion to its heat, so tiles
    never recomputed show the frame untouched. ``legend``: a caption under a colour bar, bottom left."""
    h, w = image.shape[:2]
    level = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)
    cells = cv2.resize(level, (w, h), interpolation=cv2.INTER_NEAREST)
    colours = cv2.applyColorMap((cells * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    weight = (alpha * cells)[..., None]
    out = (image * (1 - weight) + colours * weight).astype(image.dtype)
    if legend:
        bar_w, bar_h, x, y = min(160, w - 12), 10, 6, h - 30
        if bar_w > 20 and y > 0:
            ramp = cv2.applyColorMap(np.linspace(0, 255, bar_w, dtype=np.uint8)[None].repeat(bar_h, 0),
                                     cv2.COLORMAP_INFERNO)
            out[y:y + bar_h, x:x + bar_w] = ramp
            cv2.putText(out, legend, (x, y + bar_h + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                        cv2.LINE_AA)
    return out


def track_color(track_id: int) -> tuple[int, int, int]:
    """A stable, distinct colour per track (golden-ratio hue steps)."""
    hue = int((track_id * 0.618033988749895 % 1.0) * 179)
    bgr = cv2.cvtColor(np.uint8([[[hue, 200, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def draw_tracks(image: np.ndarray, boxes: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Boxes coloured by track, labelled with the track ID."""
    out = image.copy()
    for (x1, y1, x2, y2), i in zip(np.asarray(boxes).astype(int), ids):
        color = track_color(int(i))
        cv2.rectangle(out, (x1, y1), (x2, y2), color, 2)
        cv2.putText(out, f"#{int(i)}", (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    return out
