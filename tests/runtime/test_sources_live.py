"""Live or file by what the source is; a live source that stops is reopened; credentials never shown.

Real loopback HTTP servers (tests/runtime/servers.py) and FFmpeg's HTTP client, no mocks."""

import time

import pytest

from passrt.errors import PassrtError, redact
from passrt.runtime import sources
from passrt.runtime.capture import CaptureThread
from passrt.runtime.sources import open_source
from tests.runtime.servers import MjpegCamera, serve_directory
from tests.runtime.test_io import write_clip


def test_redact_masks_userinfo_everywhere_in_a_line():
    line = "cannot open rtsp://admin:s3cret@10.0.0.2:554/live and http://token@cam/x.mjpg, not /a@b"
    out = redact(line)
    assert "s3cret" not in out and "admin" not in out and "token" not in out
    assert "rtsp://***@10.0.0.2:554/live" in out and "http://***@cam/x.mjpg" in out and "/a@b" in out
    assert redact("vtest") == "vtest" and redact("rtsp://cam/stream") == "rtsp://cam/stream"


def test_a_file_over_http_is_a_file_every_frame_kept(tmp_path):
    """The issue's case: a file served over http:// was taken for a live stream and frames dropped."""
    write_clip(tmp_path / "clip.avi", frames=30)
    server, base = serve_directory(tmp_path)
    try:
        with open_source(f"{base}/clip.avi") as source:
            assert not source.is_live and source.frame_count == 30
            capture = CaptureThread(source, maxsize=2)
            got = []
            for frame in capture:  # a consumer slower than the producer: a live source would drop
                time.sleep(0.005)
                got.append(frame.index)
    finally:
        server.shutdown()
    assert got == list(range(30)) and capture.dropped == 0


def test_live_stream_that_stops_is_reopened_and_lost_frames_counted(tmp_path, capfd, monkeypatch):
    monkeypatch.setattr(sources, "CAMERA_TIMEOUT_S", 0.5)  # notice the silence sooner; same logic
    camera = MjpegCamera(frames_per_session=10, down_s=1.0)
    try:
        with open_source(camera.url, max_frames=16, reconnect_timeout=20) as source:
            assert source.is_live
            levels = [int(f.image[10, 10, 0]) for f in source]
            lost, reconnects, fps = source.lost_frames, source.reconnects, source.fps
    finally:
        camera.close()
    # 10 frames of session 1, then the stream drops, the camera is down for a second, and the
    # frames come from session 2: the source reopened the stream by itself.
    assert len(levels) == 16
    assert all(abs(v - 100) <= 3 for v in levels[:10]) and all(abs(v - 200) <= 3 for v in levels[10:])
    assert reconnects == 1 and camera.sessions == 2
    # Frames the camera would have sent while we waited: at least the silence plus the down time.
    assert lost >= int((0.5 + 1.0) * fps) - 2
    err = capfd.readouterr().err
    assert "reopening (attempt 1)" in err and "reopened after" in err


def test_live_stream_gone_for_good_ends_with_one_clear_error(monkeypatch):
    monkeypatch.setattr(sources, "CAMERA_TIMEOUT_S", 0.3)
    camera = MjpegCamera(frames_per_session=3, down_s=60)
    try:
        with open_source(camera.url, reconnect_timeout=1.5) as source:
            with pytest.raises(PassrtError, match="no frames for 1.5 s and reopening failed"):
                list(source)
    finally:
        camera.close()


def test_credentials_never_in_a_source_error():
    with pytest.raises(PassrtError) as info:
        open_source("rtsp://admin:s3cret@127.0.0.1:9/live")  # nothing listens on port 9
    assert "s3cret" not in str(info.value) and "rtsp://***@127.0.0.1:9/live" in str(info.value)


def test_input_loop_replays_a_file_with_indices_carrying_on(tmp_path):
    write_clip(tmp_path / "clip.avi", frames=5)
    with open_source(str(tmp_path / "clip.avi"), loop=2) as source:
        frames = list(source)
    assert [f.index for f in frames] == list(range(15))  # three passes
    levels = [int(f.image[2, 60, 0]) for f in frames]
    assert levels[:5] == levels[5:10] == levels[10:]  # the same pictures each pass
    with open_source(str(tmp_path / "clip.avi"), loop=-1, max_frames=23) as source:
        assert len(list(source)) == 23  # forever, until something else stops it


def test_input_width_and_height_scale_any_source(tmp_path):
    from passrt.runtime.sources import CaptureOptions

    write_clip(tmp_path / "clip.avi", frames=3, size=(64, 48))
    with open_source(str(tmp_path / "clip.avi"), options=CaptureOptions(width=32)) as source:
        assert source.size == (32, 24)  # the height follows the aspect ratio when only the width is given
        assert {f.image.shape for f in source} == {(24, 32, 3)}
    with open_source(str(tmp_path / "clip.avi"), options=CaptureOptions(width=100, height=20)) as source:
        assert {f.image.shape for f in source} == {(20, 100, 3)}
