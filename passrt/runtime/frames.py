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


class FrameStream:
    """Frames ``start`` .. ``start + count`` of ``uri``, decoded as they are needed, ``block`` at a time,
    as BGR uint8 (H, W, 3): what ``bench`` holds at any moment is one block, whatever ``count``."""

    def __init__(self, uri: str, count: int, start: int = 0, block: int = 10):
        self.uri, self.count, self.start, self.block = uri, count, start, block
        with open_source(uri) as source:  # the clip's rate and length, and a clear error up front
            self.fps = source.fps
            total = source.frame_count
        self.expected = min(count, total - start) if total else count

    def _frames(self):
        with open_source(self.uri) as source:
            n = 0
            for frame in source:
                if frame.index < self.start:
                    continue
                if n == self.count:
                    return
                n += 1
                yield frame.image

    def warmup(self, n: int) -> list:
        """The first ``n`` frames (at least one: engines are opened on the first frame's shape)."""
        images = [image for image, _ in zip(self._frames(), range(max(n, 1)))]
        if not images:
            raise PassrtError(f"{redact(self.uri)}: no frames could be decoded"
                              + (f" from frame {self.start} on" if self.start else ""))
        return images

    def blocks(self):
        block: list = []
        for image in self._frames():
            block.append(image)
            if len(block) == self.block:
                yield block
                block = []
        if block:
            yield block


def stream_frames(uri: str, count: int, start: int = 0, block: int = 10) -> FrameStream:
    return FrameStream(uri, count, start, block)
