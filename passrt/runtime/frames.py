"""Read a stretch of a clip into memory: one reader for ``bench``, export verification and gate training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from passrt.errors import PassrtError, redact
from passrt.runtime.sources import open_source


@dataclass
class Clip:
    frames: list  # BGR uint8 (H, W, 3), or what ``preprocess`` made of them
    fps: float | None
    start: int  # file position of frames[0]


def read_frames(uri: str, count: int | None = None, size: tuple[int, int] | None = None, start: int = 0,
                end: int | None = None, preprocess=None) -> Clip:
    """Frames ``start`` .. ``end`` (exclusive) of ``uri``, at most ``count``, resized to (H, W) = ``size``
    where they differ (area interpolation), each passed through ``preprocess`` if given."""
    import cv2

    frames = []
    with open_source(uri) as source:
        for frame in source:
            if frame.index < start:
                continue
            if (end is not None and frame.index >= end) or (count is not None and len(frames) == count):
                break
            image: np.ndarray = frame.image
            if size is not None and image.shape[:2] != tuple(size):
                image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            frames.append(preprocess(image) if preprocess is not None else image)
        fps = source.fps
    if not frames:
        raise PassrtError(f"{redact(uri)}: no frames could be decoded" + (f" from frame {start} on" if start else ""))
    return Clip(frames, fps, start)
