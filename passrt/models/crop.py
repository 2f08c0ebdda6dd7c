"""A crop that follows a person but holds still while the person does.

Temporal sparsity needs a still input. A landmark model run on a crop that follows the person's
box frame by frame sees a new image every frame (the box jitters by a pixel or two, so every input
pixel moves), and every tile is recomputed. So the crop here is *held*: its size comes from a
ladder of sizes (steps of ``ladder``) and its corner from a grid (``1/grid`` of its side), and it
moves only when the person's box leaves its inner region (``margin`` of the side on each edge), or
grows out of it, or shrinks by more than two ladder steps. While it holds, the same frame pixels
land on the same input pixels, and the sparse engine recomputes only where the person (or anything
else in the crop) moved. The price: the person is not centred and not at one scale inside the crop;
BlazePose's landmark model is trained on jittered crops, and the margins keep the whole body in.

Pure geometry (numpy): :class:`View` maps model-input pixels back to the frame, :class:`HeldCrop`
decides the crop from a box per frame, :func:`cut` makes the model input from a frame and a crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class View:
    """Where a model input sits in the frame: frame = (x0, y0) + input_pixels * scale; ``side``: the
    square's side in frame pixels."""

    x0: float
    y0: float
    scale: float
    side: float

    def to_frame(self, xy: np.ndarray) -> np.ndarray:
        return np.asarray(xy, np.float32) * self.scale + np.array([self.x0, self.y0], np.float32)


@dataclass(frozen=True)
class Crop:
    """A square region of the frame in whole pixels (it may reach past the frame's edges)."""

    x0: int
    y0: int
    side: int

    def contains(self, box, margin: float) -> bool:
        m = margin * self.side
        x1, y1, x2, y2 = box
        return (x1 >= self.x0 + m and y1 >= self.y0 + m
                and x2 <= self.x0 + self.side - m and y2 <= self.y0 + self.side - m)

    def view(self, size: int) -> View:
        return View(float(self.x0), float(self.y0), self.side / size, float(self.side))


class HeldCrop:
    """``update(box)`` per frame -> the crop to use (or None before anyone was seen).

    ``pad``: the crop's side over the box's longer side at least (MediaPipe's ROI scale is 1.25 of a
    body-sized box; 1.4 leaves the box room to jitter inside the margins);
    ``ladder``: ratio between allowed sides; ``grid``: the corner snaps to side / grid;
    ``margin``: the share of the side the box must keep from each edge to hold the crop;
    ``patience``: frames without a box before the crop is dropped."""

    def __init__(self, pad: float = 1.4, ladder: float = 2 ** 0.25, grid: int = 8, margin: float = 0.05,
                 patience: int = 10, min_side: int = 32):
        self.pad, self.ladder, self.grid, self.margin = pad, ladder, grid, margin
        self.patience, self.min_side = patience, min_side
        self.crop: Crop | None = None
        self.box = None  # the box followed last
        self.missed = 0
        self.moves = 0  # how often the crop moved (a new crop counts)

    def reset(self) -> None:
        self.crop, self.box, self.missed, self.moves = None, None, 0, 0

    def side_for(self, box) -> int:
        """The smallest ladder side that holds the box with its pad."""
        want = max(self.pad * max(box[2] - box[0], box[3] - box[1]), self.min_side)
        step = math.ceil(math.log(want / self.min_side, self.ladder) - 1e-9)
        return int(round(self.min_side * self.ladder ** max(step, 0)))

    def placed(self, box, previous=None) -> Crop:
        """The crop a box gets when the held one no longer fits: the held side while the box still fits
        it, else the box's ladder side; the corner on the grid, the box inside the margins if any grid
        corner allows. With the ``previous`` box, the crop leads the motion: the box is put near the
        edge it comes from, so a walking person stays inside about twice as long."""
        side = self.side_for(box)
        if self.crop is not None and side <= self.crop.side < side * self.ladder ** 2:
            side = self.crop.side  # no flicker between two sizes while the box's size jitters
        step = max(1, side // self.grid)
        inner = side * (1 - 2 * self.margin)
        longest = max(box[2] - box[0], box[3] - box[1])
        corner = []
        for lo, hi, axis in ((box[0], box[2], 0), (box[1], box[3], 1)):
            centre = (lo + hi) / 2
            if previous is not None:
                motion = centre - (previous[axis] + previous[axis + 2]) / 2
                lead = max(0.0, (inner - (hi - lo)) / 2 - step)  # keep a grid step for the rounding
                if abs(motion) >= 0.05 * longest:  # moving, not the detector's jitter
                    centre += math.copysign(lead, motion)
            at = (centre - side / 2) / step
            fits = [k * step for k in (round(at), math.floor(at), math.ceil(at))
                    if k * step + self.margin * side <= lo and hi <= k * step + side - self.margin * side]
            corner.append(fits[0] if fits else int(round(at)) * step)
        return Crop(int(corner[0]), int(corner[1]), side)

    def holds(self, box) -> bool:
        c = self.crop
        if c is None or not c.contains(box, self.margin):
            return False
        return self.side_for(box) * self.ladder ** 2 > c.side  # not shrunk by two steps or more

    def update(self, box) -> Crop | None:
        if box is None:
            self.missed += 1
            if self.missed > self.patience:
                self.crop, self.box = None, None
            return self.crop
        previous, self.box = self.box, tuple(float(v) for v in box)
        self.missed = 0
        if not self.holds(self.box):
            self.crop = self.placed(self.box, previous)
            self.moves += 1
        return self.crop


def follow(boxes: np.ndarray, previous) -> int | None:
    """Which of ``boxes`` (N, 4) is the person followed: the one overlapping ``previous`` most
    (IoU above 0.1), else none; with no previous box, the largest."""
    if len(boxes) == 0:
        return None
    if previous is None:
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        return int(np.argmax(areas))
    p = np.asarray(previous, np.float32)
    iw = np.clip(np.minimum(boxes[:, 2], p[2]) - np.maximum(boxes[:, 0], p[0]), 0, None)
    ih = np.clip(np.minimum(boxes[:, 3], p[3]) - np.maximum(boxes[:, 1], p[1]), 0, None)
    inter = iw * ih
    union = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) + (p[2] - p[0]) * (p[3] - p[1]) - inter
    iou = inter / np.maximum(union, 1e-6)
    best = int(np.argmax(iou))
    return best if iou[best] > 0.1 else None


def cut(image: np.ndarray, crop: Crop, size: int) -> np.ndarray:
    """The crop of an (H, W, C) image resized to (size, size); outside the frame is black. The same
    crop of the same pixels gives the same result, bit for bit."""
    import cv2

    h, w = image.shape[:2]
    canvas = np.zeros((crop.side, crop.side, image.shape[2]), image.dtype)
    x1, y1 = max(crop.x0, 0), max(crop.y0, 0)
    x2, y2 = min(crop.x0 + crop.side, w), min(crop.y0 + crop.side, h)
    if x2 > x1 and y2 > y1:
        canvas[y1 - crop.y0:y2 - crop.y0, x1 - crop.x0:x2 - crop.x0] = image[y1:y2, x1:x2]
    shrink = crop.side > size
    return cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
