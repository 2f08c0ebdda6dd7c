"""Frame sources behind one URI factory, with jetson-utils' conventions.

    open_source("clip.mp4")          a video file (also file://clip.mp4)
    open_source("vtest")             a sample clip, fetched on first use
    open_source(0) / open_source("0")   a camera index
    open_source("/dev/video0")       V4L2 (also v4l2:///dev/video0)
    open_source("csi://0")           a Jetson CSI camera through GStreamer (nvarguscamerasrc)
    open_source("rtsp://host/path")  a network stream
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from passrt import assets
from passrt.errors import PassrtError

MAX_CONSECUTIVE_FAILURES = 10  # files: undecodable frames in a row before we give up
CAMERA_TIMEOUT_S = 2.0  # live sources: no frame for this long means the camera is gone


@dataclass
class Frame:
    index: int
    image: np.ndarray  # (H, W, 3) uint8 BGR
    timestamp: float


class FrameSource:
    """Iterates :class:`Frame`s; ``corrupt_frames`` counts frames skipped because they did not decode."""

    def __init__(self, uri: str, capture: cv2.VideoCapture, is_live: bool, max_frames: int | None = None):
        self.uri, self.cap, self.is_live, self.max_frames = uri, capture, is_live, max_frames
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else None
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not is_live else 0
        self.frame_count = count if count > 0 else None
        self.size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.corrupt_frames = 0
        self._first = self._read_first()

    def _read_first(self) -> np.ndarray:
        ok, image = self.cap.read()
        if not ok or image is None:
            self.cap.release()
            raise PassrtError(f"{self.uri}: no frame could be decoded (unsupported or corrupt video?)")
        self.size = (image.shape[1], image.shape[0])
        return image

    def __iter__(self):
        # ``position`` counts frames consumed from the file, decoded or not: a failed read()
        # consumes its frame, but OpenCV's CAP_PROP_POS_FRAMES does not move on failures.
        index, image, position, delivered = 0, self._first, 1, 0
        failures, last_ok = 0, time.monotonic()
        while image is not None:
            yield Frame(index, image, time.monotonic())
            delivered += 1
            if self.max_frames and delivered >= self.max_frames:
                return
            image = None
            while image is None:
                ok, got = self.cap.read()
                index, position = position, position + 1
                if ok and got is not None:
                    image, failures, last_ok = got, 0, time.monotonic()
                elif self.is_live:
                    if time.monotonic() - last_ok > CAMERA_TIMEOUT_S:
                        raise PassrtError(f"{self.uri}: the camera stopped delivering frames; "
                                          "check the cable, the driver or the stream")
                    time.sleep(0.01)
                elif self.frame_count is not None and position < self.frame_count \
                        and failures < MAX_CONSECUTIVE_FAILURES:
                    failures += 1
                    self.corrupt_frames += 1
                    print(f"passrt: warning: {self.uri}: frame {index} could not be decoded, skipped",
                          file=sys.stderr)
                else:
                    if failures:
                        print(f"passrt: warning: {self.uri}: stopped after {failures} undecodable frames",
                              file=sys.stderr)
                    return

    def close(self) -> None:
        self.cap.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _has_gstreamer() -> bool:
    info = cv2.getBuildInformation()
    return any("GStreamer" in line and "YES" in line for line in info.splitlines())


def csi_pipeline(sensor: int, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    return (f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM),width={width},"
            f"height={height},framerate={fps}/1 ! nvvidconv ! video/x-raw,format=BGRx ! "
            "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1")


def open_source(uri: str | int, max_frames: int | None = None) -> FrameSource:
    """Open a camera, stream or file by URI (see the module docstring)."""
    text = str(uri).strip()
    if text.isdigit():
        return _camera(text, cv2.VideoCapture(int(text)))
    if text.startswith("v4l2://"):
        text = text[len("v4l2://"):]
    if text.startswith("/dev/video"):
        if not Path(text).exists():
            raise PassrtError(f"{text} does not exist; list cameras with 'v4l2-ctl --list-devices'")
        return _camera(text, cv2.VideoCapture(text, cv2.CAP_V4L2))
    if text.startswith("csi://"):
        if not _has_gstreamer():
            raise PassrtError(f"{text} needs OpenCV built with GStreamer (as on JetPack); "
                              "this OpenCV has no GStreamer support")
        sensor = text[len("csi://"):] or "0"
        if not sensor.isdigit():
            raise PassrtError(f"{text}: expected csi://N with a sensor number")
        return _camera(text, cv2.VideoCapture(csi_pipeline(int(sensor)), cv2.CAP_GSTREAMER))
    if text.startswith(("rtsp://", "rtmp://", "http://", "https://")):
        cap = cv2.VideoCapture(text, cv2.CAP_FFMPEG)
        if not cap.isOpened():
            raise PassrtError(f"cannot open stream {text}; check the address and that it is reachable")
        return FrameSource(text, cap, is_live=True, max_frames=max_frames)
    if text.startswith("file://"):
        text = text[len("file://"):]
    path = Path(assets.resolve_input(text))
    if not path.exists():
        raise PassrtError(f"no such file: {path}")
    if not path.is_file():
        raise PassrtError(f"{path} is not a video file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise PassrtError(f"{path}: OpenCV cannot open this file (unsupported or corrupt video?)")
    return FrameSource(str(path), cap, is_live=False, max_frames=max_frames)


def _camera(uri: str, cap: cv2.VideoCapture) -> FrameSource:
    if not cap.isOpened():
        raise PassrtError(f"cannot open camera {uri}; list cameras with 'v4l2-ctl --list-devices'")
    return FrameSource(uri, cap, is_live=True)
