"""`passrt run --input A --input B`: one process, one model, each stream as if it ran alone."""

import json

import cv2

from tests.cli.test_cli import passrt

SAME = ("frames", "refreshes", "active_fraction_mean", "macs_executed_mean")


def run(tmp_path, name, inputs, track):
    args = ["run", "--headless", "--max-frames", "8", "--policy", "regiondrop", "--json", str(tmp_path / f"{name}.json")]
    for uri in inputs:
        args += ["--input", uri]
    if track:
        args += ["--track", "bytetrack", "--tracks", str(tmp_path / f"{name}.txt")]
    if name == "multi":
        args += ["--output", str(tmp_path / "tiled.mp4")]
    out = passrt(*args)
    assert out.returncode == 0, out.stderr
    return json.loads((tmp_path / f"{name}.json").read_text()), out


def test_two_streams_equal_each_stream_alone(tmp_path):
    track = True  # `make install` installs the track extra: a missing tracker is a failure, not a lighter test
    inputs = ["carphone", "franck"]  # two resolutions: 176x144 and 360x288
    multi, out = run(tmp_path, "multi", inputs, track)
    assert len(multi["streams"]) == 2 and multi["frames"] == 16
    assert all(s["fps"] > 0 for s in multi["streams"]) and "#1" in out.stderr and "#2" in out.stderr
    for i, uri in enumerate(inputs):
        alone, _ = run(tmp_path, f"alone{i}", [uri], track)
        stream = multi["streams"][i]
        assert stream["input"] == alone["input"]
        for key in SAME:  # the same masks and work, frame for frame: caches and policy state not shared
            got = stream.get(key, stream["engine"].get(key))
            assert got == alone.get(key, alone["engine"].get(key)), (uri, key)
        if track:  # and the same detections: identical tracks
            assert (tmp_path / f"multi.{i + 1}.txt").read_text() == (tmp_path / f"alone{i}.txt").read_text()
    cap = cv2.VideoCapture(str(tmp_path / "tiled.mp4"))
    assert (cap.get(cv2.CAP_PROP_FRAME_WIDTH), cap.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (2 * 176, 144)


def test_several_inputs_need_a_pytorch_engine():
    out = passrt("run", "--input", "carphone", "--input", "franck", "--headless", "--guard", "5")
    assert out.returncode == 2 and "--guard runs with one input" in out.stderr


def test_batched_dense_streams_equal_each_stream_alone(tmp_path):
    """--batch-streams: one forward for both streams (same size: carphone, and carphone backwards from an
    image folder); each stream's outputs as alone, to float rounding, so its tracks are the same."""
    import numpy as np
    import torch

    from passrt.models import load_model
    from passrt.runtime.backends import open_backend
    from passrt.runtime.sources import open_source

    with open_source("carphone", max_frames=8) as source:
        frames = [f.image for f in source]
    folder = tmp_path / "backwards"
    folder.mkdir()
    for i, image in enumerate(reversed(frames)):
        cv2.imwrite(str(folder / f"{i}.png"), image)
    spec = load_model("ssdlite-pedestrian")
    dense = open_backend("dense", spec)
    xs = [spec.preprocess(frames[0]), spec.preprocess(frames[-1]), spec.preprocess(frames[3])]
    for x, batched in zip(xs, dense.batch(xs)):
        for a, b in zip(batched, dense(x)):
            assert a.shape == b.shape
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
    assert isinstance(dense.batch(xs[:1])[0][0], torch.Tensor)

    inputs = ["carphone", str(folder)]
    args = ["--headless", "--max-frames", "8", "--policy", "dense", "--track", "bytetrack"]
    out = passrt("run", *args, "--batch-streams", "--input", inputs[0], "--input", inputs[1],
                 "--tracks", str(tmp_path / "multi.txt"), "--json", str(tmp_path / "multi.json"))
    assert out.returncode == 0, out.stderr
    multi = json.loads((tmp_path / "multi.json").read_text())
    assert multi["batched"] and [s["frames"] for s in multi["streams"]] == [8, 8]
    for i, uri in enumerate(inputs):
        alone = passrt("run", *args, "--input", uri, "--tracks", str(tmp_path / f"alone{i}.txt"))
        assert alone.returncode == 0, alone.stderr
        assert (tmp_path / f"multi.{i + 1}.txt").read_text() == (tmp_path / f"alone{i}.txt").read_text()


def test_batched_sparse_streams_equal_the_streams_unbatched(tmp_path):
    """--batch-streams with regiondrop: vtest and vtest backwards (image folders, one size: batched, one kernel call
    per step for both) and carphone (its own size: alone, said in one line); every stream's tracks and work as
    without --batch-streams (which the test above holds equal to each stream alone)."""
    from passrt.runtime.sources import open_source

    with open_source("vtest", max_frames=8) as source:
        frames = [cv2.resize(f.image, (192, 144), interpolation=cv2.INTER_AREA) for f in source]
    inputs = []
    for name, order in (("forwards", frames), ("backwards", frames[::-1])):
        (tmp_path / name).mkdir()
        for i, image in enumerate(order):
            cv2.imwrite(str(tmp_path / name / f"{i}.png"), image)
        inputs += ["--input", str(tmp_path / name)]
    inputs += ["--input", "carphone"]
    args = ["run", "--headless", "--max-frames", "8", "--policy", "regiondrop", "--track", "bytetrack", *inputs]
    runs = {}
    for name, extra in (("batched", ["--batch-streams"]), ("unbatched", ["--no-batch-streams"])):
        out = passrt(*args, *extra, "--tracks", str(tmp_path / f"{name}.txt"), "--json", str(tmp_path / f"{name}.json"))
        assert out.returncode == 0, out.stderr
        runs[name] = json.loads((tmp_path / f"{name}.json").read_text()), out.stderr
    batched, stderr = runs["batched"]
    assert batched["batched"] and [s["batched"] for s in batched["streams"]] == [True, True, False]
    assert "note: --batch-streams: stream #3 ran alone: no other stream started at its size 176x144" in stderr
    assert "note: --batch-streams" not in runs["unbatched"][1] and not runs["unbatched"][0]["batched"]
    for i, (got, want) in enumerate(zip(batched["streams"], runs["unbatched"][0]["streams"])):
        for key in SAME:
            assert got["engine"][key] == want["engine"][key], (i, key)
        assert (tmp_path / f"batched.{i + 1}.txt").read_text() == (tmp_path / f"unbatched.{i + 1}.txt").read_text()
    assert batched["streams"][0]["engine"]["refreshes"] < 8  # sparse frames, batched: not all dense


def test_batching_only_when_asked_where_it_did_not_measure_faster():
    """Several inputs: batching measured under the 5 % that counts as faster on this CPU for every policy
    (benchmarks/RESULTS.md), so streams batch only with --batch-streams; one input has nothing to batch."""
    from passrt.runtime.pipeline import Pipeline

    two = ["carphone", "carphone"]
    assert not Pipeline(two, "regiondrop", display=False).batch
    assert Pipeline(two, "regiondrop", display=False, batch=True).batch
    assert not Pipeline(two, "dense", display=False).batch
    assert Pipeline(two, "dense", display=False, batch=True).batch
    assert not Pipeline("carphone", "regiondrop", display=False).batch
