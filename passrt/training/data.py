"""Training frames: unlabeled clips, decoded once, sampled as (frame, earlier frame) pairs.

A clip is a file, an asset name (vtest, sports2d, pose2sim, franck, marketstreet, bigbuckbunny,
carphone) or either with a frame range, ``vtest@400:`` (frames 400 to the end) or
``vtest@0:300``, so that evaluation frames can be held out of training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from passrt.errors import PassrtError

_RANGE = re.compile(r"^(.*)@(\d*):(\d*)$")


@dataclass
class ClipSpec:
    uri: str
    start: int = 0
    end: int | None = None

    @classmethod
    def parse(cls, text: str) -> "ClipSpec":
        m = _RANGE.match(text)
        if not m:
            return cls(text)
        start, end = int(m.group(2) or 0), int(m.group(3)) if m.group(3) else None
        if end is not None and end <= start:
            raise PassrtError(f"clip '{text}': the frame range {start}:{end} is empty")
        return cls(m.group(1), start, end)


def read_clip(spec: ClipSpec, size: tuple[int, int] | None, max_frames: int) -> list[np.ndarray]:
    """BGR uint8 frames of one clip (resized to (H, W) = ``size`` if given), at most ``max_frames``."""
    from passrt.runtime.frames import read_frames

    frames = read_frames(spec.uri, max_frames, size, spec.start, spec.end).frames
    if len(frames) < 2:
        raise PassrtError(f"{spec.uri}: {len(frames)} frame(s) in the range asked for; training needs at least 2")
    return frames


class FramePairs:
    """Random (x_t, x_{t-d}) pairs, d in 1..``max_gap``, from several clips, preprocessed on demand.

    Gaps above 1 teach the gates what a cache several frames old looks like: with
    compare='reference' a skipped patch is compared with the input its cache was computed from.
    """

    def __init__(self, clips: list[list[np.ndarray]], preprocess, max_gap: int = 3, specs=None):
        if max_gap < 1:
            raise PassrtError(f"--max-gap must be at least 1, got {max_gap}")
        self.clips, self.preprocess, self.max_gap = clips, preprocess, max_gap
        self.specs = specs or [ClipSpec(f"clip{i}") for i in range(len(clips))]
        self.weights = torch.tensor([len(c) - 1 for c in clips], dtype=torch.float64)

    def __len__(self) -> int:
        return int(self.weights.sum())

    def sample(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(x_t, x_{t-d}, {"clip": uri, "index": frame number of x_t in the file, "gap": d})."""
        c = int(torch.multinomial(self.weights, 1, generator=generator))
        clip = self.clips[c]
        t = int(torch.randint(1, len(clip), (1,), generator=generator))
        d = min(t, int(torch.randint(1, self.max_gap + 1, (1,), generator=generator)))
        info = {"clip": self.specs[c].uri, "index": self.specs[c].start + t, "gap": d}
        return self.preprocess(clip[t]), self.preprocess(clip[t - d]), info
