"""A directory of images, or a glob, as a source: images written from a real clip (carphone)."""

import json

import cv2
import numpy as np
import pytest

from passrt.errors import PassrtError
from passrt.runtime.image_folder import list_images, natural_key
from passrt.runtime.sources import open_source
from tests.cli.test_cli import passrt

FRAMES = 12


@pytest.fixture(scope="module")
def clip_frames():
    with open_source("carphone", max_frames=FRAMES) as source:
        return [f.image for f in source]


def write_folder(directory, frames, suffix=".png"):
    """frame1 .. frame12, numbers not zero-padded: a string sort would put frame10 after frame1."""
    directory.mkdir()
    for i, image in enumerate(frames, 1):
        assert cv2.imwrite(str(directory / f"frame{i}{suffix}"), image)
    return directory


def test_natural_order():
    names = ["f10.png", "f2.png", "f1.png", "F3.png"]
    assert sorted(names, key=natural_key) == ["f1.png", "f2.png", "F3.png", "f10.png"]


def test_directory_and_glob_read_like_the_clip(tmp_path, clip_frames):
    folder = write_folder(tmp_path / "frames", clip_frames)
    (folder / "notes.txt").write_text("not an image: ignored in a directory")
    for uri in (str(folder), str(folder) + "/", str(folder / "*.png"), f"{folder}/frame1?.png"):
        with open_source(uri) as source:
            got = [f.image for f in source]
            assert not source.is_live and source.size == (176, 144)
            expected = clip_frames if "?" not in uri else clip_frames[9:]  # frame10..frame12
            assert source.frame_count == len(expected)
        assert len(got) == len(expected)
        for a, b in zip(got, expected):  # PNG is lossless: the clip's frames, in the clip's order
            np.testing.assert_array_equal(a, b)


def test_loop_rate_and_max_frames(tmp_path, clip_frames):
    from passrt.runtime.sources import CaptureOptions

    folder = write_folder(tmp_path / "frames", clip_frames[:4], ".jpg")
    with open_source(str(folder), loop=2, options=CaptureOptions(rate=12.5)) as source:
        frames = list(source)
        assert source.fps == 12.5
    assert [f.index for f in frames] == list(range(12))
    np.testing.assert_array_equal(frames[0].image, frames[4].image)
    with open_source(str(folder), max_frames=3) as source:
        assert len(list(source)) == 3 and source.fps is None


def test_clear_errors(tmp_path, clip_frames):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(PassrtError, match="no images in this directory"):
        open_source(str(tmp_path / "empty"))
    with pytest.raises(PassrtError, match="matches no file"):
        open_source(str(tmp_path / "*.jpg"))

    broken = write_folder(tmp_path / "broken", clip_frames[:4])
    (broken / "frame3.png").write_bytes(b"\x89PNG truncated")
    with open_source(str(broken)) as source, pytest.raises(PassrtError, match=r"frame3\.png: cannot be decoded"):
        list(source)
    (broken / "frame1.png").write_bytes(b"")  # the very first image: an error at open
    with pytest.raises(PassrtError, match=r"frame1\.png: cannot be decoded"):
        open_source(str(broken))


def test_mixed_sizes_refused_unless_scaled(tmp_path, clip_frames):
    from passrt.runtime.sources import CaptureOptions

    frames = list(clip_frames[:4])
    frames[2] = cv2.resize(frames[2], (88, 72))
    folder = write_folder(tmp_path / "mixed", frames)
    with open_source(str(folder)) as source, pytest.raises(PassrtError, match=r"frame3\.png is 88x72 but the first"):
        list(source)
    with open_source(str(folder), options=CaptureOptions(width=160, height=120)) as source:
        assert [f.image.shape for f in source] == [(120, 160, 3)] * 4


def test_run_on_a_folder_equals_run_on_the_clip(tmp_path, clip_frames):
    folder = write_folder(tmp_path / "frames", clip_frames)
    results = {}
    for name, uri in (("clip", "carphone"), ("folder", str(folder))):
        out = passrt("run", "--input", uri, "--headless", "--max-frames", str(FRAMES), "--policy", "regiondrop",
                     "--track", "bytetrack", "--tracks", str(tmp_path / f"{name}.txt"),
                     "--json", str(tmp_path / f"{name}.json"))
        assert out.returncode == 0, out.stderr
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert results["folder"]["frames"] == FRAMES and results["folder"]["dropped_frames"] == 0
    for key in ("active_fraction_mean", "macs_executed_mean", "refreshes"):
        assert results["folder"]["engine"][key] == results["clip"]["engine"][key], key
    assert (tmp_path / "folder.txt").read_text() == (tmp_path / "clip.txt").read_text()


def test_cli_errors_are_one_line(tmp_path, clip_frames):
    (tmp_path / "empty").mkdir()
    out = passrt("run", "--input", str(tmp_path / "empty"), "--headless")
    assert out.returncode == 2 and "no images in this directory" in out.stderr
    assert [line for line in out.stderr.splitlines() if line.strip()] == [out.stderr.strip()]
    frames = list(clip_frames[:4])
    frames[3] = cv2.resize(frames[3], (88, 72))
    folder = write_folder(tmp_path / "mixed", frames)
    out = passrt("run", "--input", str(folder), "--headless", "--json", str(tmp_path / "run.json"))
    assert out.returncode == 2 and "frame4.png is 88x72" in out.stderr and "Traceback" not in out.stderr
    assert json.loads((tmp_path / "run.json").read_text())["frames"] == 3  # what ran is summarised
    assert list_images(str(folder)) == [str(folder / f"frame{i}.png") for i in range(1, 5)]


def test_an_output_never_overwrites_an_image_of_the_folder(tmp_path, clip_frames):
    from passrt.runtime.outputs import check_outputs

    folder = write_folder(tmp_path / "frames", clip_frames[:3])
    for uri in (str(folder), str(folder / "*.png")):
        with pytest.raises(PassrtError, match="is the input"):
            check_outputs([uri], {"--json": str(folder / "frame2.png")})
    check_outputs([str(folder)], {"--json": str(folder / "run.json")})  # a new file next to them is fine
