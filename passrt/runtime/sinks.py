"""Where results go: a window, a video file, a JSON file."""

from __future__ import annotations

import errno
import json
import os
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from passrt.errors import PassrtError


class VideoFileSink:
    """An .mp4 (MPEG-4 Part 2 in *fragmented* MP4) or .avi (Motion JPEG) file, written with PyAV.

    Why not cv2.VideoWriter: its MP4 is playable only once ``release()`` writes the index at the
    end, so a killed process or a full disk leaves a file no player opens, and OpenCV ignores
    ``movflags``. A fragmented MP4 (``frag_keyframe+empty_moov``) is playable up to its last
    complete fragment (one per key frame, every second here) whatever ends the process, and PyAV
    raises the OS error of a failed write (ENOSPC, EFBIG) where OpenCV only logs a warning.
    A write error becomes a :class:`PassrtError` naming the file and how many frames it kept.
    """

    def __init__(self, path: str, fps: float, size: tuple[int, int]):
        import av

        target = Path(path)
        if not target.parent.is_dir():
            raise PassrtError(f"cannot write {path}: directory {target.parent} does not exist")
        suffix = target.suffix.lower()
        if suffix not in (".mp4", ".avi"):
            raise PassrtError(f"cannot write video {path}: use a .mp4 or .avi file name")
        self.path, self.size, self.frames = path, size, 0
        rate = Fraction(fps).limit_denominator(1001) if fps and fps > 0 else Fraction(25)
        try:
            if suffix == ".mp4":
                self.container = av.open(str(target), "w", format="mp4",
                                         options={"movflags": "frag_keyframe+empty_moov+default_base_moof"})
                self.stream = self.container.add_stream("mpeg4", rate=rate)
                self.stream.pix_fmt = "yuv420p"
                # about 0.25 bit per pixel: close to OpenCV's mp4v quality for annotated camera frames
                self.stream.bit_rate = max(int(size[0] * size[1] * float(rate) * 0.25), 200_000)
                self.stream.codec_context.gop_size = max(int(round(float(rate))), 1)  # a fragment a second
            else:
                self.container = av.open(str(target), "w", format="avi")
                self.stream = self.container.add_stream("mjpeg", rate=rate)
                self.stream.pix_fmt = "yuvj420p"
                self.stream.codec_context.qscale = 3  # visually lossless for overlays; MJPEG has no bit rate
            # even sizes: yuv420p subsamples by 2 (an odd frame is padded by one pixel)
            self.stream.width, self.stream.height = size[0] + size[0] % 2, size[1] + size[1] % 2
        except OSError as e:
            raise PassrtError(f"cannot write video {path}: {e.strerror or e}") from None
        self._closed = False

    def write(self, image: np.ndarray) -> None:
        import av

        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size)  # a mid-stream resolution change
        if image.shape[1] != self.stream.width or image.shape[0] != self.stream.height:
            image = cv2.copyMakeBorder(image, 0, self.stream.height - image.shape[0], 0,
                                       self.stream.width - image.shape[1], cv2.BORDER_REPLICATE)
        try:
            for packet in self.stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                self.container.mux(packet)
        except OSError as e:
            self._abandon()
            raise PassrtError(self._failed(e)) from None
        self.frames += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for packet in self.stream.encode():  # flush the encoder
                self.container.mux(packet)
            self.container.close()
        except OSError as e:
            self._abandon()
            raise PassrtError(self._failed(e)) from None

    def _abandon(self) -> None:
        """After a failed write: close without raising again (the file keeps its complete fragments)."""
        self._closed = True
        try:
            self.container.close()
        except OSError:
            pass

    def _failed(self, e: OSError) -> str:
        why = {errno.ENOSPC: "the disk is full", errno.EFBIG: "the file size limit was reached",
               errno.EDQUOT: "the disk quota is exceeded"}.get(e.errno, e.strerror or str(e))
        return (f"cannot write {self.path}: {why}; stopped after {self.frames} frames "
                "(the video up to the last complete second is kept)")


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
        try:
            self.path.write_text(json.dumps(data, indent=2, default=_plain) + "\n")
        except OSError as e:
            raise PassrtError(f"cannot write {self.path}: {e.strerror or e}") from None


def _plain(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
