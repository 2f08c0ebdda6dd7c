"""Where results go: a window, a video file, a JSON file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from passrt.errors import PassrtError


class VideoFileSink:
    def __init__(self, path: str, fps: float, size: tuple[int, int]):
        target = Path(path)
        if not target.parent.is_dir():
            raise PassrtError(f"cannot write {path}: directory {target.parent} does not exist")
        fourcc = cv2.VideoWriter_fourcc(*("MJPG" if target.suffix.lower() == ".avi" else "mp4v"))
        self.writer = cv2.VideoWriter(str(target), fourcc, fps, size)
        if not self.writer.isOpened():
            raise PassrtError(f"cannot write video {path}: use a .mp4 or .avi file name")
        self.path, self.size, self.frames = path, size, 0

    def write(self, image: np.ndarray) -> None:
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size)  # a mid-stream resolution change
        self.writer.write(image)
        self.frames += 1

    def close(self) -> None:
        self.writer.release()


class DisplaySink:
    """A window; ``show`` returns False once the user pressed q or Esc."""

    def __init__(self, title: str = "passrt"):
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) and os.name != "nt":
            raise PassrtError("no display found: pass --headless (and --output FILE to record)")
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            raise PassrtError("this OpenCV build cannot open windows (headless build): pass --headless "
                              "or install opencv-python instead of opencv-python-headless") from None

    def show(self, image: np.ndarray) -> bool:
        cv2.imshow(self.title, image)
        return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
        except cv2.error:
            pass


class JsonSink:
    def __init__(self, path: str):
        target = Path(path)
        if not target.parent.is_dir():
            raise PassrtError(f"cannot write {path}: directory {target.parent} does not exist")
        self.path = target

    def write(self, data: dict) -> None:
        self.path.write_text(json.dumps(data, indent=2, default=_plain) + "\n")


def _plain(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
