"""Frame sources behind one URI factory, with jetson-utils' conventions.

    open_source("clip.mp4")          a video file (also file://clip.mp4)
    open_source("frames/")           a directory of images, or a glob ("frames/*.jpg"): read like a file
    open_source("vtest")             a sample clip, fetched on first use
    open_source(0) / open_source("0")   a camera index
    open_source("/dev/video0")       V4L2 (also v4l2:///dev/video0)
    open_source("csi://0")           a Jetson CSI camera through GStreamer (nvarguscamerasrc)
    open_source("rtsp://host/path")  a network stream (also http(s)://, rtmp://)

Live or file is decided by what the source is, not by its scheme: a network URI whose container
reports a frame count (a file served over HTTP) is read like a file, every frame, no drops;
one without (RTSP, an MJPEG camera) is live. A live source that stops delivering is reopened
with backoff (0.5 s doubling to 10 s, a log line each time) and the frames it would have sent
meanwhile are counted in ``lost_frames``. Credentials in a URI never reach a message: sources
carry a redacted ``name`` for that.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from passrt import assets
from passrt.errors import PassrtError, redact
from passrt.runtime.image_folder import ImageFolderCapture, is_image_folder, list_images

MAX_CONSECUTIVE_FAILURES = 10  # files: undecodable frames in a row before we give up
CAMERA_TIMEOUT_S = 2.0  # live sources: no frame for this long means the camera is gone: reopen it
BACKOFF_S = (0.5, 10.0)  # first and longest wait between reopen attempts (doubling)
NETWORK_TIMEOUT_MS = 5000  # open/read timeout of network streams (FFmpeg's default is 30 s)


@dataclass
class Frame:
    index: int
    image: np.ndarray  # (H, W, 3) uint8 BGR
    timestamp: float


class FrameSource:
    """Iterates :class:`Frame`s; ``corrupt_frames`` counts frames skipped because they did not decode."""

    def __init__(self, uri: str, capture: cv2.VideoCapture, is_live: bool, max_frames: int | None = None,
                 reopen=None, reconnect_timeout: float | None = None, loop: int = 0):
        """``reopen``: a callable giving a fresh capture of the same source (live: reconnect; file: loop);
        ``reconnect_timeout``: give up after this many seconds without a frame (None: keep trying);
        ``loop``: a file plays 1 + ``loop`` times (-1: forever), jetson-utils' ``--input-loop``."""
        self.uri, self.cap, self.is_live, self.max_frames = uri, capture, is_live, max_frames
        self.loops_left = loop
        self.name = redact(uri)  # what every message and summary shows
        self.reopen, self.reconnect_timeout = reopen, reconnect_timeout
        fps = capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps if fps and 0 < fps < 1000 else None
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not is_live else 0
        self.frame_count = count if count > 0 else None
        self.size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.corrupt_frames = self.lost_frames = self.reconnects = 0
        self.options = CaptureOptions()
        self._pending = None
        self._first = self._read_first()

    def _read_first(self) -> np.ndarray:
        ok, image = self.cap.read()
        if not ok or image is None:
            self.cap.release()
            raise PassrtError(f"{self.name}: no frame could be decoded (unsupported or corrupt video?)")
        self.size = (image.shape[1], image.shape[0])
        return image

    def __iter__(self):
        # ``position`` counts frames consumed from the file, decoded or not: a failed read()
        # consumes its frame, but OpenCV's CAP_PROP_POS_FRAMES does not move on failures.
        index, image, position, delivered = 0, self._first, 1, 0
        failures, last_ok = 0, time.monotonic()
        base = 0  # index of the file's frame 0 in this pass (a looped file restarts at a later index)
        while image is not None:
            yield Frame(index, self.options.resize(image), time.monotonic())
            delivered += 1
            if self.max_frames and delivered >= self.max_frames:
                return
            image = None
            while image is None:
                if self._pending is not None:  # the first frame of a reopened source
                    ok, got, self._pending = True, self._pending, None
                else:
                    ok, got = self.cap.read()
                index, position = position, position + 1
                if ok and got is not None:
                    image, failures, last_ok = got, 0, time.monotonic()
                elif self.is_live:
                    if time.monotonic() - last_ok > CAMERA_TIMEOUT_S:
                        self._reconnect(last_ok)
                        last_ok = time.monotonic()
                    else:
                        time.sleep(0.01)
                elif self.frame_count is not None and position - base < self.frame_count \
                        and failures < MAX_CONSECUTIVE_FAILURES:
                    failures += 1
                    self.corrupt_frames += 1
                    print(f"passrt: warning: {self.name}: frame {index} could not be decoded, skipped",
                          file=sys.stderr)
                elif self.loops_left != 0 and self.reopen is not None and failures == 0:
                    # the end of a file played in a loop: from the top again, frame indices carry on
                    self.loops_left -= 1 if self.loops_left > 0 else 0
                    self.cap.release()
                    self.cap = self.reopen()
                    base = position = index  # the failed read at the end consumed no frame
                else:
                    if failures:
                        print(f"passrt: warning: {self.name}: stopped after {failures} undecodable frames",
                              file=sys.stderr)
                    return

    def _reconnect(self, last_ok: float) -> None:
        """Reopen a live source that went quiet, waiting 0.5 s, 1 s, 2 s ... 10 s between attempts;
        on success, count the frames it would have sent meanwhile as lost."""
        if self.reopen is None:
            raise PassrtError(f"{self.name}: the camera stopped delivering frames; "
                              "check the cable, the driver or the stream")
        wait, attempt = BACKOFF_S[0], 0
        while True:
            if self.reconnect_timeout is not None and time.monotonic() - last_ok > self.reconnect_timeout:
                raise PassrtError(f"{self.name}: no frames for {self.reconnect_timeout:g} s and reopening failed; "
                                  "check the cable, the driver or the stream")
            attempt += 1
            print(f"passrt: warning: {self.name}: no frames for {time.monotonic() - last_ok:.1f} s, reopening "
                  f"(attempt {attempt})", file=sys.stderr, flush=True)
            self.cap.release()
            cap = self.reopen()
            if cap.isOpened():
                ok, image = cap.read()
                if ok and image is not None:
                    self.cap, self._pending = cap, image
                    self.reconnects += 1
                    gap = time.monotonic() - last_ok
                    lost = max(int(round(gap * self.fps)) - 1, 0) if self.fps else 0
                    self.lost_frames += lost
                    print(f"passrt: warning: {self.name}: reopened after {gap:.1f} s, about {lost} frames lost",
                          file=sys.stderr, flush=True)
                    return
            cap.release()
            time.sleep(wait)
            wait = min(wait * 2, BACKOFF_S[1])

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


@dataclass
class CaptureOptions:
    """jetson-utils' ``--input-width/--input-height/--input-rate/--input-codec``: what a camera is asked
    for (V4L2 / a camera index / CSI); ``width``/``height`` also rescale every source's frames, so a
    file or stream arrives at the same size. None: the source's own."""

    width: int | None = None
    height: int | None = None
    rate: float | None = None
    codec: str | None = None  # a V4L2 FOURCC such as MJPG, YUYV, H264

    def apply(self, cap: cv2.VideoCapture) -> cv2.VideoCapture:
        if self.codec:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.codec.upper().ljust(4)[:4]))
        if self.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
        if self.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.rate:
            cap.set(cv2.CAP_PROP_FPS, self.rate)
        return cap

    def resize(self, image: np.ndarray) -> np.ndarray:
        if not (self.width or self.height):
            return image
        h, w = image.shape[:2]
        size = (self.width or round(w * self.height / h), self.height or round(h * self.width / w))
        return image if size == (w, h) else cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def open_source(uri: str | int, max_frames: int | None = None,
                reconnect_timeout: float | None = None, loop: int = 0,
                options: CaptureOptions | None = None) -> FrameSource:
    """Open a camera, stream or file by URI (see the module docstring). ``reconnect_timeout``: how
    long a live source may stay silent, reopening, before the run ends (None: forever). ``loop``: play
    a file 1 + ``loop`` times (-1: forever; jetson-utils' ``--input-loop``); no effect on live sources.
    ``options``: :class:`CaptureOptions` (size, rate, codec)."""
    opts = options or CaptureOptions()
    source = _open(str(uri).strip(), max_frames, reconnect_timeout, loop, opts)
    source.options = opts
    h, w = opts.resize(source._first).shape[:2]
    source.size = (w, h)
    return source


def _open(text: str, max_frames, reconnect_timeout, loop, opts: CaptureOptions) -> FrameSource:
    live = {"max_frames": max_frames, "reconnect_timeout": reconnect_timeout}
    if text.isdigit():
        return _camera(text, lambda: opts.apply(cv2.VideoCapture(int(text))), live)
    if text.startswith("v4l2://"):
        text = text[len("v4l2://"):]
    if text.startswith("/dev/video"):
        if not Path(text).exists():
            raise PassrtError(f"{text} does not exist; list cameras with 'v4l2-ctl --list-devices'")
        return _camera(text, lambda: opts.apply(cv2.VideoCapture(text, cv2.CAP_V4L2)), live)
    if text.startswith("csi://"):
        if not _has_gstreamer():
            raise PassrtError(f"{text} needs OpenCV built with GStreamer (as on JetPack); "
                              "this OpenCV has no GStreamer support")
        sensor = text[len("csi://"):] or "0"
        if not sensor.isdigit():
            raise PassrtError(f"{text}: expected csi://N with a sensor number")
        csi = csi_pipeline(int(sensor), opts.width or 1280, opts.height or 720, int(opts.rate or 30))
        return _camera(text, lambda: cv2.VideoCapture(csi, cv2.CAP_GSTREAMER), live)
    if text.startswith(("rtsp://", "rtmp://", "http://", "https://")):
        def reopen():
            return cv2.VideoCapture(text, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS,
                                                           cv2.CAP_PROP_READ_TIMEOUT_MSEC, NETWORK_TIMEOUT_MS])
        cap = reopen()
        if not cap.isOpened():
            raise PassrtError(f"cannot open stream {redact(text)}; check the address and that it is reachable")
        # What the source is, not its scheme: a container with a frame count is a file (served over
        # HTTP, say), read in full; a stream has none (FFmpeg reports 0 or less).
        if cap.get(cv2.CAP_PROP_FRAME_COUNT) > 0:
            return FrameSource(text, cap, is_live=False, max_frames=max_frames, loop=loop, reopen=reopen)
        return FrameSource(text, cap, is_live=True, reopen=reopen, **live)
    if text.startswith("file://"):
        text = text[len("file://"):]
    if is_image_folder(text):
        files = list_images(text)
        scaled = bool(opts.width and opts.height)

        def images():
            return ImageFolderCapture(files, opts.rate, scaled)
        return FrameSource(text, images(), is_live=False, max_frames=max_frames, loop=loop, reopen=images)
    path = Path(assets.resolve_input(text))
    if not path.exists():
        raise PassrtError(f"no such file: {path}")
    if not path.is_file():
        raise PassrtError(f"{path} is not a video file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise PassrtError(f"{path}: OpenCV cannot open this file (unsupported or corrupt video?)")
    return FrameSource(str(path), cap, is_live=False, max_frames=max_frames, loop=loop,
                       reopen=lambda: cv2.VideoCapture(str(path)))


def _camera(uri: str, opener, live: dict) -> FrameSource:
    cap = opener()
    if not cap.isOpened():
        raise PassrtError(f"cannot open camera {uri}; list cameras with 'v4l2-ctl --list-devices'")
    return FrameSource(uri, cap, is_live=True, reopen=opener, **live)
