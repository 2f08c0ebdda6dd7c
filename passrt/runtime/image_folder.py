"""A directory of images, or a glob, read as a video file (jetson-utils' image-sequence input).

    --input frames/            every image in the directory (.jpg, .png, ...), other files ignored
    --input 'frames/*.jpg'     the files the pattern matches (quote it: the shell would expand it)

Images play in natural order (frame2 before frame10, as a person numbers them; a plain string
sort puts frame10 first). It is a file source: every image is read, none dropped, ``--input-loop``
replays it. ``--input-rate`` gives it a frame rate (the output video's); without one it has none.

All images must have the first one's size: a model's caches, a video file and a tracker all need one
frame size, so an image of another size ends the run with one line naming it, unless
``--input-width`` *and* ``--input-height`` are given, which scale every image to that size. An image
that cannot be decoded ends the run the same way (a folder is data the user chose; skipping a frame
of it silently would hide a broken file).
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

import cv2
import numpy as np

from passrt.errors import PassrtError

# What OpenCV's imread decodes in every build we ship (opencv-python-headless, JetPack's OpenCV).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")
GLOB_CHARS = "*?["


def is_image_folder(text: str) -> bool:
    """True for an existing directory or a pattern with glob characters (not an existing file)."""
    path = Path(text)
    return path.is_dir() or (any(c in text for c in GLOB_CHARS) and not path.exists())


def natural_key(path: str):
    # Natural order in one line, rather than the natsort package for this one key: digit runs compare
    # as numbers ('frame2' < 'frame10'); the rest compares as text, case-insensitively.
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path)]


def list_images(text: str) -> list[str]:
    """The image files of a directory or glob, naturally sorted; one clear error when there are none."""
    path = Path(text)
    if path.is_dir():
        files = [str(p) for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
        if not files:
            raise PassrtError(f"{text}: no images in this directory (looked for {', '.join(IMAGE_SUFFIXES)})")
    else:
        files = [f for f in glob.glob(text) if Path(f).is_file()]
        if not files:
            raise PassrtError(f"'{text}' matches no file")
    return sorted(files, key=natural_key)


class ImageFolderCapture:
    """The part of ``cv2.VideoCapture``'s interface that :class:`~passrt.runtime.sources.FrameSource`
    uses (``read``, ``get``, ``isOpened``, ``release``), over a list of image files, so a folder is
    read, counted and looped exactly like a video file."""

    def __init__(self, files: list[str], rate: float | None = None, scaled: bool = False):
        """``rate``: the frame rate to report (None: none); ``scaled``: frames are scaled to a fixed size
        downstream (``--input-width`` and ``--input-height``), so mixed sizes are allowed."""
        self.files, self.rate, self.scaled = files, rate, scaled
        self.position = 0
        self.size: tuple[int, int] | None = None  # (W, H) of the first image

    def isOpened(self) -> bool:  # noqa: N802 (cv2's name)
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.position >= len(self.files):
            return False, None
        path = self.files[self.position]
        self.position += 1
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise PassrtError(f"{path}: cannot be decoded as an image (corrupt, empty or not an image)")
        size = (image.shape[1], image.shape[0])
        if self.size is None:
            self.size = size
        elif size != self.size and not self.scaled:
            raise PassrtError(f"{path} is {size[0]}x{size[1]} but the first image is {self.size[0]}x{self.size[1]}; "
                              "all images must have one size, or give --input-width and --input-height to scale "
                              "them all")
        return True, image

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return float(len(self.files))
        if prop == cv2.CAP_PROP_FPS:
            return float(self.rate or 0.0)
        if prop in (cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT) and self.size is not None:
            return float(self.size[0 if prop == cv2.CAP_PROP_FRAME_WIDTH else 1])
        return 0.0

    def release(self) -> None:
        pass
