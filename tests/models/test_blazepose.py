"""The TensorFlow-free BlazePose port against LiteRT's own outputs on a real frame.

``tests/fixtures/blazepose_litert_reference.npz`` holds what LiteRT (``ai-edge-litert`` 2.3.0,
XNNPACK) computed with ``pose_landmark_full.tflite`` from the mediapipe 0.10.21 wheel: ``rgb``
(256, 256, 3) uint8, a crop of vtest frame 0 around the largest person the SSDLite detector finds
(a 105-pixel square at (606, 226), resized with INTER_AREA), fed as ``rgb / 255``; the outputs
``landmarks`` (1, 195), ``pose_flag`` (1, 1), ``world`` (1, 117) in full and ``segmentation``
(1, 256, 256, 1) and ``heatmap`` (1, 64, 64, 39) every 4th row and column. The model itself comes
from ``assets.fetch`` (PyPI), as in normal use.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

import passrt
from passrt.errors import PassrtError
from passrt.models import load_model
from passrt.models.blazepose import TASK_OUTPUTS, keypoints, load_blazepose
from passrt.models.tflite_import import load_tflite

FIXTURE = np.load(Path(__file__).parent.parent / "fixtures" / "blazepose_litert_reference.npz")
NAMES = ["landmarks", "pose_flag", "segmentation", "heatmap", "world"]


@pytest.fixture(scope="module")
def spec():
    return load_model("blazepose-landmark")


@pytest.fixture(scope="module")
def full():
    """The landmark model with all five of the file's outputs (the model names run two)."""
    return load_blazepose(outputs=None)


def _input():
    return torch.from_numpy(FIXTURE["rgb"].astype(np.float32) / 255).permute(2, 0, 1)[None].contiguous()


def _sampled(name, out):
    out = out.numpy()
    return out[:, ::4, ::4, :] if name in ("segmentation", "heatmap") else out


def test_port_matches_litert_on_a_real_frame(full):
    with torch.no_grad():
        outputs = full(_input())
    assert len(outputs) == len(NAMES)
    # Tolerances relative to each output's range: LiteRT's XNNPACK sums in another order (the
    # segmentation logits reach 1300; measured differences: keypoints 0.003 px, logits 0.94).
    for name, out in zip(NAMES, outputs):
        want = FIXTURE[name]
        got = _sampled(name, out)
        assert got.shape == want.shape, name
        scale = max(1.0, float(np.abs(want).max()))
        np.testing.assert_allclose(got, want, atol=1e-3 * scale, rtol=0, err_msg=name)
    assert float(outputs[1]) > 0.99  # a person, as LiteRT says
    points = keypoints(outputs, (256, 256))
    want = keypoints([FIXTURE["landmarks"]], (256, 256))
    assert np.abs(points[:, :2] - want[:, :2]).max() < 0.05  # pixels


def test_the_model_names_run_only_the_outputs_keypoints_read(spec, full):
    """The task module gives the full model's landmarks and pose flag, bit for bit, from fewer ops (the
    segmentation and heatmap decoders left out)."""
    assert TASK_OUTPUTS == (0, 1)
    x = _input()
    with torch.no_grad():
        want, got = full(x), spec.module(x)
    assert len(got) == 2 and all(torch.equal(g, want[k]) for g, k in zip(got, TASK_OUTPUTS))
    convs = lambda m: sum(isinstance(c, torch.nn.Conv2d) for c in m.modules())  # noqa: E731
    assert convs(spec.module) < 0.8 * convs(full)
    with pytest.raises(PassrtError, match="has 5 outputs, asked for \\[0, 7\\]"):
        load_blazepose(outputs=(0, 7))


def test_sparse_exact_equals_dense_on_the_real_frame(full):
    """exact at threshold 0 follows the dense port (all five outputs) while part of the crop changes."""
    engine = passrt.sparsify(full, "exact", scene_cut=1.0)
    base = _input()
    gen = torch.Generator().manual_seed(0)
    for t in range(4):
        x = base.clone()
        x[:, :, 100:100 + 20 * t, 60:60 + 30 * t] = torch.rand(1, 3, 20 * t, 30 * t, generator=gen)
        with torch.no_grad():
            want = full(x)
        got = engine(x)
        # Relative to each output's largest value: the segmentation logits (to 1300) come out of five
        # resizes and many adds, and differ by up to 8e-4 of that between the engine's dense path
        # (frame 0) and the module itself; every other output by less than 4e-5.
        for name, g, w in zip(NAMES, got, want):
            torch.testing.assert_close(g, w, atol=1e-3 * max(1.0, float(w.abs().max())), rtol=0,
                                       msg=lambda m: f"frame {t} {name}: {m}")
    assert engine.stats()["refreshes"] == 1 and engine.stats()["active_fraction"] < 1.0


def test_tflite_errors_are_one_line(tmp_path):
    with pytest.raises(PassrtError, match="no such TFLite file"):
        load_tflite(tmp_path / "missing.tflite")


def test_keypoints_in_frame_pixels(spec):
    """The letterbox scales the frame's longer side to 256: keypoints scale back by the same factor."""
    outputs = [torch.from_numpy(FIXTURE["landmarks"]), torch.tensor([[0.99]])]
    native = spec.postprocess(outputs, (256, 256)).points
    assert native.shape == (1, 33, 3)
    wide = spec.postprocess(outputs, (300, 512)).points  # scale 0.5
    np.testing.assert_allclose(wide[0, :, :2], native[0, :, :2] * 2, rtol=1e-6)
    np.testing.assert_allclose(wide[0, :, 2], native[0, :, 2])
    assert len(spec.postprocess([outputs[0], torch.tensor([[0.2]])], (256, 256))) == 0  # nobody there


def test_bench_reports_pck_against_dense():
    """franck: one person, head and shoulders, whom the full-frame model finds (pose flag 0.59)."""
    from passrt.policies import PolicySpec
    from passrt.runtime.bench import run_benchmark

    result = run_benchmark("franck", "blazepose-landmark", [PolicySpec.parse("exact")], frames=3, warmup=1,
                           onnxruntime=False, progress=False)
    exact = result["policies"]["exact"]
    assert exact["keypoints_scored"] > 0 and exact["agreement_pck"] == 1.0  # threshold 0: the dense keypoints


def _vtest_frames(n):
    from passrt.runtime.frames import read_frames

    return read_frames("vtest", n).frames


@pytest.fixture(scope="module")
def crop_spec():
    from passrt.runtime.backends import open_stages

    return open_stages(load_model("blazepose"))  # the person detector under regiondrop, as run/bench use it


def test_person_crop_finds_the_walkers_of_vtest(crop_spec):
    """vtest's people are 30 pixels wide: the full-frame letterbox finds nobody, the held crop does,
    and its keypoints land on the person the detector found."""
    from passrt.models import view_of

    crop_spec.preprocess.reset()
    for image in _vtest_frames(3):
        x = crop_spec.preprocess(image)
        assert x.shape == (1, 3, 256, 256) and view_of(x).scale < 1  # a crop, upscaled
        with torch.no_grad():
            found = crop_spec.postprocess(crop_spec.module(x), image.shape[:2], view=view_of(x))
        assert len(found) == 1
        x1, y1, x2, y2 = crop_spec.preprocess.held.box
        pad = 0.25 * (y2 - y1)
        points = found.points[0]
        seen = points[points[:, 2] > 0.5, :2]
        assert len(seen) > 20
        assert ((seen[:, 0] > x1 - pad) & (seen[:, 0] < x2 + pad)
                & (seen[:, 1] > y1 - pad) & (seen[:, 1] < y2 + pad)).all()


def test_the_crop_input_is_still_where_the_person_is(crop_spec):
    """The same frame twice: the same crop, bit for bit the same input (a crop that recentred on the
    detector's box could not promise that)."""
    image = _vtest_frames(1)[0]
    crop_spec.preprocess.reset()
    a = crop_spec.preprocess(image)
    b = crop_spec.preprocess(image)
    assert torch.equal(a, b) and crop_spec.preprocess.held.moves == 1


def test_bench_reports_pck_on_vtest_with_the_person_crop():
    from passrt.policies import PolicySpec
    from passrt.runtime.bench import run_benchmark

    result = run_benchmark("vtest", "blazepose", [PolicySpec.parse("exact")], frames=3, warmup=1,
                           onnxruntime=False, progress=False)
    exact = result["policies"]["exact"]
    assert exact["keypoints_scored"] > 0 and exact["agreement_pck"] == 1.0
    assert result["crop_moves"] >= 1 and result["preprocess_ms_median"] > 0


def test_pose_detector_port_matches_litert_on_a_real_frame():
    """``pose_detection.tflite`` (sparse fp16 weights: DENSIFY then DEQUANTIZE; DEPTH_TO_SPACE in
    TFLite's DCR order; CONCATENATION) against LiteRT 2.3.0 on sports2d frame 0 letterboxed into
    224x224 (``tests/fixtures/pose_detection_litert_reference.npz``: ``rgb``, every anchor's score
    logit, and the 12 box/keypoint values of the 64 best anchors), input scaled to [-1, 1] as
    MediaPipe feeds it; then exact@0 under the sparse engine with real content moved."""
    from passrt import assets

    ref = np.load(Path(__file__).parent.parent / "fixtures" / "pose_detection_litert_reference.npz")
    module, hw = load_tflite(assets.fetch("blazepose-detector"))
    assert hw == (224, 224)
    x = torch.from_numpy(ref["rgb"].astype(np.float32) / 255 * 2 - 1).permute(2, 0, 1)[None].contiguous()
    with torch.no_grad():
        boxes, scores = module(x)
    # values reach 690 (boxes, pixels) and 470 (logits); LiteRT's XNNPACK sums in another order
    np.testing.assert_allclose(scores.numpy(), ref["scores"], atol=5e-3, rtol=0)
    np.testing.assert_allclose(boxes.numpy()[0, ref["top"]], ref["boxes_top"], atol=1e-2, rtol=0)
    engine = passrt.sparsify(module, "exact", scene_cut=1.0)
    patch = x[:, :, 60:120, 80:140].clone()
    for t in range(3):
        moved = x.clone()
        if t:
            moved[:, :, 10 * t:10 * t + 60, 20 * t:20 * t + 60] = patch
        with torch.no_grad():
            want = module(moved)
        for g, w in zip(engine(moved), want):
            torch.testing.assert_close(g, w, atol=5e-3, rtol=0)
    assert engine.stats()["active_fraction"] < 0.9


def test_passrt_run_draws_keypoints_and_the_crop_on_vtest(tmp_path):
    """`passrt run --model blazepose --input vtest` as a user runs it: a person found on each frame,
    the held crop drawn (its frame colour) with the keypoints."""
    import json
    import re
    import subprocess
    import sys

    import cv2

    out = subprocess.run([sys.executable, "-m", "passrt", "run", "--model", "blazepose", "--input", "vtest",
                          "--headless", "--max-frames", "3", "--snapshot", str(tmp_path / "snap"),
                          "--json", str(tmp_path / "run.json")], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["model"] == "blazepose" and summary["frames"] == 3
    assert re.search(r"people\s+1", out.stderr)
    image = cv2.imread(str(sorted((tmp_path / "snap").glob("*.png"))[-1]))
    crop_colour = np.all(np.abs(image.astype(int) - (255, 160, 0)) < 30, axis=2)
    assert crop_colour.sum() > 200  # the crop's outline (about 4 x 150 pixels on vtest)
    keypoint_red = np.all(np.abs(image.astype(int) - (0, 0, 255)) < 40, axis=2)
    assert keypoint_red.sum() > 50  # the keypoints' dots
