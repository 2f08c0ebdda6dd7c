"""Sources, capture thread, sinks and drawing."""

import threading
import time

import cv2
import numpy as np
import pytest

from passrt.errors import PassrtError
from passrt.runtime.capture import CaptureThread
from passrt.runtime.draw import TileHeat, draw_detections, draw_heatmap, draw_overlay
from passrt.runtime.sinks import DisplaySink, JsonSink, VideoFileSink
from passrt.runtime.sources import Frame, open_source


def write_clip(path, frames=12, size=(64, 48)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    for i in range(frames):
        img = np.full((size[1], size[0], 3), i * 20 % 255, np.uint8)
        cv2.putText(img, str(i), (5, 30), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
        writer.write(img)
    writer.release()
    return path


def test_real_clip_reads():
    with open_source("carphone", max_frames=20) as source:
        frames = list(source)
        assert source.size == (176, 144) and source.fps and source.frame_count == 120
    assert len(frames) == 20 and frames[0].image.shape == (144, 176, 3)
    assert [f.index for f in frames] == list(range(20))


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(PassrtError, match="no such file"):
        open_source(str(tmp_path / "nope.mp4"))
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"\x00garbage" * 1000)
    with pytest.raises(PassrtError, match="junk.avi"):
        open_source(str(junk))


def damage_mjpeg_frames(path, frames):
    """Zero the JPEG payload of the given frames (file positions) of an MJPEG AVI, chunk header
    kept, so exactly those frames fail to decode and the container still indexes every frame."""
    data = bytearray(path.read_bytes())
    chunks, pos = [], 0
    while (pos := data.find(b"00dc", pos)) >= 0:
        size = int.from_bytes(data[pos + 4:pos + 8], "little")
        if data[pos + 8:pos + 10] == b"\xff\xd8":  # a frame chunk, not an idx1 entry
            chunks.append((pos + 8, size))
        pos += 4
    for i in frames:
        start, size = chunks[i]
        data[start:start + size] = bytes(size)
    path.write_bytes(bytes(data))
    return len(chunks)


def test_corrupt_frames_in_the_middle_are_skipped(tmp_path, capfd):
    path = write_clip(tmp_path / "clip.avi", frames=30)
    damaged = [5, 12, 13]  # one alone and two in a row
    assert damage_mjpeg_frames(path, damaged) == 30
    with open_source(str(path)) as source:
        frames = list(source)
        corrupt = source.corrupt_frames
    # Exactly the damaged frames are skipped and counted; every other frame comes out, in
    # order, with its position in the file as its index and its own picture.
    assert [f.index for f in frames] == [i for i in range(30) if i not in damaged]
    assert corrupt == len(damaged)
    for f in frames:
        assert abs(int(f.image[2, 60, 0]) - f.index * 20 % 255) <= 8, f.index
    err = capfd.readouterr().err
    for i in damaged:
        assert f"frame {i} could not be decoded, skipped" in err


def test_camera_and_csi_errors():
    with pytest.raises(PassrtError, match="camera 7|cannot open"):
        open_source("7")
    with pytest.raises(PassrtError, match="/dev/video9 does not exist"):
        open_source("v4l2:///dev/video9")
    if "GStreamer" not in cv2.getBuildInformation() or "GStreamer:                   NO" in cv2.getBuildInformation():
        with pytest.raises(PassrtError, match="GStreamer"):
            open_source("csi://0")


class FakeLive:
    is_live = True

    def __init__(self, n, fail_at=None):
        self.n, self.fail_at = n, fail_at

    def __iter__(self):
        for i in range(self.n):
            if i == self.fail_at:
                raise PassrtError("camera unplugged")
            yield Frame(i, np.zeros((2, 2, 3), np.uint8), time.monotonic())


def test_capture_block_keeps_every_frame():
    source = FakeLive(50)
    source.is_live = False
    cap = CaptureThread(source, maxsize=2)
    got = []
    for f in cap:
        time.sleep(0.001)
        got.append(f.index)
    assert got == list(range(50)) and cap.dropped == 0


def test_capture_drops_oldest_for_live_sources():
    gate = threading.Event()

    class Slow(FakeLive):
        def __iter__(self):
            yield from super().__iter__()
            gate.set()

    cap = CaptureThread(Slow(100), maxsize=3)
    gate.wait(5)  # the producer ran ahead of a consumer that has not started yet
    got = [f.index for f in cap]
    assert cap.dropped > 0 and got[-1] == 99 and got == sorted(got)


def test_capture_reraises_source_errors():
    cap = CaptureThread(FakeLive(10, fail_at=5), maxsize=20)
    with pytest.raises(PassrtError, match="unplugged"):
        list(cap)


def test_video_sink_roundtrip_and_errors(tmp_path):
    sink = VideoFileSink(str(tmp_path / "out.avi"), 10, (64, 48))
    for _ in range(7):
        sink.write(np.zeros((48, 64, 3), np.uint8))
    sink.close()
    with open_source(str(tmp_path / "out.avi")) as source:
        assert len(list(source)) == 7
    with pytest.raises(PassrtError, match="does not exist"):
        VideoFileSink(str(tmp_path / "missing" / "out.mp4"), 10, (64, 48))
    with pytest.raises(PassrtError, match="does not exist"):
        JsonSink(str(tmp_path / "missing" / "x.json"))


def test_display_without_screen(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(PassrtError, match="--headless"):
        DisplaySink()


def test_drawing_leaves_input_untouched():
    img = np.zeros((60, 80, 3), np.uint8)
    boxed = draw_detections(img, np.array([[10, 10, 40, 50]], np.float32), np.array([0.9]))
    assert boxed.shape == img.shape and boxed.any() and not img.any()
    assert draw_overlay(img, ["a", "bb"]).shape == img.shape and not img.any()
    grey = np.full_like(img, 100)
    heat = draw_heatmap(grey, np.array([[1.0, 0.5], [0.0, 0.0]]))
    assert (heat[:30, :40] != 100).any() and (heat[30:, :] == 100).all() and (grey == 100).all()


def test_tile_heat_is_the_recent_share_of_frames_that_recomputed_a_tile():
    # Three tiles: recomputed every frame, every other frame, never; 200 frames, window 10.
    heat = TileHeat(window=10)
    for i in range(200):
        level = heat.update(np.array([[True, i % 2 == 0, False]]))
    assert level[0, 0] == 1.0 and level[0, 2] == 0.0 and abs(level[0, 1] - 0.5) < 0.06
    assert TileHeat(1).update(np.array([[True, False]])).tolist() == [[1.0, 0.0]]
    heat.update(np.ones((2, 2), bool))  # another grid (resolution or layer): starts afresh
    assert heat.heat.tolist() == [[1.0, 1.0], [1.0, 1.0]]
    # Graded: more heat, more colour; no heat, the frame untouched.
    grey = np.full((40, 120, 3), 100, np.uint8)
    drawn = draw_heatmap(grey, np.array([[1.0, 0.5, 0.0]])).astype(int)
    change = np.abs(drawn - 100).sum(axis=2)
    assert change[:, :40].min() > change[:, 40:80].max() > 0 and change[:, 80:].max() == 0
    legend = draw_heatmap(grey, np.zeros((1, 3)), legend="recomputed")
    assert (legend[-30:] != 100).any() and (legend[:-30] == 100).all()


def test_capture_block_with_slow_consumer_keeps_the_last_frames():
    """The end-of-stream marker must wait for room, never push a frame out."""
    source = FakeLive(6)
    source.is_live = False
    cap = CaptureThread(source, maxsize=2)
    got = []
    for f in cap:
        time.sleep(0.15)  # slower than the producer's put timeout
        got.append(f.index)
    assert got == list(range(6)) and cap.dropped == 0
