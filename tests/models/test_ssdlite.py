"""The TensorFlow-free SSDLite port against TensorFlow's own outputs (vtest frame 0, 300x300).

``tests/fixtures/ssdlite_tf_reference.npz`` holds what TensorFlow 2.21 computed with the
original frozen graph: ``rgb`` (300, 300, 3) uint8, frame 0 of vtest.avi after
``cv2.resize(frame, (300, 300))`` and BGR->RGB (``rgb * 2/255 - 1`` in float32 gives TF's
input tensor bit for bit), ``box`` (1917, 4) raw box encodings (``concat:0``), ``cls``
(1917, 2) raw logits (``concat_1:0``) and ``anchors`` (1917, 4) (``Concatenate/concat:0``).
The model itself comes from ``assets.fetch`` (PyPI), as in normal use.
"""

import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from passrt import assets
from passrt.plan import trace
from passrt.runtime.frames import read_frames
from passrt.errors import PassrtError
from passrt.models import ModelSpec, load_model
from passrt.models.anchors import feature_map_sizes_for, generate_anchors, trusted_anchors, trusted_heads
from passrt.models.postprocess import decode_boxes, nms
from passrt.models.ssdlite import load_ssdlite_pedestrian
from passrt.models.tf_graph import _tensor, const, read_graph
from passrt.nn import Conv2dSame

FIXTURE = np.load(Path(__file__).parent.parent / "fixtures" / "ssdlite_tf_reference.npz")


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return load_model("ssdlite-pedestrian")


@pytest.fixture(scope="module")
def frame0_outputs(spec):
    x = spec.preprocess(np.ascontiguousarray(FIXTURE["rgb"][:, :, ::-1]))  # preprocess takes BGR
    with torch.no_grad():
        return spec.module(x)


def test_raw_outputs_match_tensorflow(frame0_outputs):
    box, cls = frame0_outputs
    assert box.shape == (1, 1917, 4) and cls.shape == (1, 1917, 2)
    box_err = float(np.abs(box[0].numpy() - FIXTURE["box"]).max())
    cls_err = float(np.abs(cls[0].numpy() - FIXTURE["cls"]).max())
    assert box_err <= 2e-4 and cls_err <= 2e-4, (box_err, cls_err)  # about 2e-5 each here


def test_anchors_match_tensorflow():
    assert feature_map_sizes_for((300, 300)) == [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    np.testing.assert_array_equal(generate_anchors((300, 300)), FIXTURE["anchors"])  # bit for bit


def test_frame0_detections(spec, frame0_outputs):
    det = spec.postprocess(frame0_outputs, (300, 300))
    assert len(det) >= 2
    assert 0.96 < det.scores[0] < 0.985 and 0.93 < det.scores[1] < 0.95, det.scores  # TF: about 0.97, 0.94
    assert np.all(np.diff(det.scores) <= 0) and det.boxes.dtype == np.float32
    w, h = det.boxes[:, 2] - det.boxes[:, 0], det.boxes[:, 3] - det.boxes[:, 1]
    assert np.all(w[:2] > 0) and np.all(h[:2] > 1.5 * w[:2])  # upright people
    assert det.boxes.min() >= 0 and det.boxes.max() <= 300


@pytest.mark.parametrize("hw", [(576, 768), (97, 131)])
def test_any_input_size_matches_its_anchors(spec, hw):
    with torch.no_grad():
        box, cls = spec.module(torch.zeros(1, 3, *hw))
    anchors = generate_anchors(hw)
    assert box.shape == (1, len(anchors), 4) and cls.shape == (1, len(anchors), 2)
    assert spec.postprocess((box, cls), hw).boxes.shape[1] == 4
    # The first aspect-1 anchor of the second layer keeps its training size in pixels (0.35 x 300).
    fh, fw = feature_map_sizes_for(hw)[0]
    a = anchors[3 * fh * fw]
    assert (a[3] - a[1]) * hw[1] == pytest.approx(0.35 * 300, rel=1e-5)
    assert (a[2] - a[0]) * hw[0] == pytest.approx(0.35 * 300, rel=1e-5)


def test_whole_image_head_is_trusted_only_at_one_cell():
    assert trusted_heads((300, 300)) == [True] * 6
    assert trusted_heads((360, 480)) == [True] * 6  # the last map is still 1x1
    assert trusted_heads((576, 768)) == [True] * 5 + [False]  # 2x2: no longer whole-image
    assert trusted_anchors((576, 768)).sum() == len(generate_anchors((576, 768))) - 2 * 2 * 6


def test_no_scenery_boxes_at_native_resolution(spec):
    """vtest at 768x576: people-sized boxes only (the issue's symptom was 250-550 px boxes on grass)."""
    clip = read_frames(str(assets.fetch("vtest")), count=5, start=100)
    for frame in clip.frames:
        with torch.no_grad():
            det = spec.postprocess(spec.module(spec.preprocess(frame)), frame.shape[:2])
        assert len(det) >= 1
        areas = (det.boxes[:, 2] - det.boxes[:, 0]) * (det.boxes[:, 3] - det.boxes[:, 1])
        assert areas.max() < 0.05 * frame.shape[0] * frame.shape[1], det.boxes


def test_graph_reader_op_counts_and_constants():
    graph = read_graph(assets.fetch("ssdlite-pedestrian"))
    ops = [n.op for n in graph.values()]
    assert ops.count("Conv2D") == 55 and ops.count("DepthwiseConv2dNative") == 33
    assert const(graph, "FeatureExtractor/MobilenetV2/Conv/weights/read").shape == (3, 3, 3, 32)
    conv = graph["FeatureExtractor/MobilenetV2/Conv/Conv2D"]
    assert conv.attrs["strides"] == [1, 2, 2, 1] and conv.attrs["padding"] == "SAME"


def test_tensor_float_val_packed_and_unpacked():
    shape = b"\x12\x04\x12\x02\x08\x03"  # tensor_shape { dim { size: 3 } }
    packed = b"\x08\x01" + shape + b"\x2a\x0c" + struct.pack("<3f", 1.5, -2.0, 3.25)
    unpacked = b"\x08\x01" + shape + b"".join(b"\x2d" + struct.pack("<f", v) for v in (1.5, -2.0, 3.25))
    splat = b"\x08\x01" + shape + b"\x2d" + struct.pack("<f", 7.0)  # one value fills the shape
    for buf, want in ((packed, [1.5, -2.0, 3.25]), (unpacked, [1.5, -2.0, 3.25]), (splat, [7.0] * 3)):
        np.testing.assert_array_equal(_tensor(buf), np.array(want, np.float32))
    ints = b"\x08\x03\x12\x04\x12\x02\x08\x02\x3a\x0b" + b"\x05" + b"\xff" * 9 + b"\x01"  # int_val [5, -1]
    np.testing.assert_array_equal(_tensor(ints), np.array([5, -1], np.int32))


def test_missing_or_corrupt_graph(tmp_path):
    with pytest.raises(PassrtError, match="cannot read"):
        load_ssdlite_pedestrian(tmp_path / "missing.pb")
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\xff\xff\xff\xff not a graph")
    with pytest.raises(PassrtError, match="not a valid TensorFlow frozen graph"):
        load_ssdlite_pedestrian(bad)
    truncated = tmp_path / "truncated.pb"
    truncated.write_bytes(assets.fetch("ssdlite-pedestrian").read_bytes()[:1_000_000])
    with pytest.raises(PassrtError, match="not a valid TensorFlow frozen graph"):
        load_ssdlite_pedestrian(truncated)
    other = tmp_path / "other.pb"
    other.write_bytes(b"\x0a\x0c\x0a\x01a\x12\x07Softmax")  # a valid GraphDef with one node
    with pytest.raises(PassrtError, match="not the SSDLite-MobileNetV2 pedestrian graph"):
        load_ssdlite_pedestrian(other)


def test_model_is_plain_for_the_sparse_engine(spec):
    """Only Conv2dSame (BatchNorm folded), ReLU6, arithmetic, the heads' reshapes and cat."""
    gm = trace(spec.module)
    kinds = {type(gm.get_submodule(n.target)).__name__ if n.op == "call_module" else str(n.target)
             for n in gm.graph.nodes if n.op not in ("placeholder", "output")}
    assert {k for k in kinds if k not in ("Conv2dSame", "ReLU6", "permute", "reshape")} == {
        "<built-in function mul>", "<built-in function sub>", "<built-in function add>", str(torch.cat)}
    convs = [m for m in spec.module.modules() if isinstance(m, Conv2dSame)]
    assert len(convs) == 88 and sum(m.groups > 1 for m in convs) == 33
    assert not spec.module.training


def test_registry_and_preprocess(spec):
    assert spec.name == "ssdlite-pedestrian" and spec.input_multiple == 1
    frame = np.zeros((5, 7, 3), np.uint8)
    frame[..., 0] = 255  # blue in BGR
    x = spec.preprocess(frame)
    assert x.shape == (1, 3, 5, 7) and x.dtype == torch.float32
    assert float(x[0, 2].min()) == 1.0 and float(x[0, :2].abs().max()) == 0.0  # RGB: blue is channel 2
    with pytest.raises(PassrtError, match="unknown model 'yolo'.*ssdlite-pedestrian"):
        load_model("yolo")


def test_decode_and_nms():
    anchors = np.array([[0.1, 0.2, 0.5, 0.4]], np.float32)
    np.testing.assert_allclose(decode_boxes(np.zeros((1, 4), np.float32), anchors), anchors, atol=1e-7)
    box = decode_boxes(np.array([[10, 0, 5 * np.log(2), 0]], np.float32), anchors)[0]  # down 1 height, 2x tall
    np.testing.assert_allclose(box, [0.3, 0.2, 1.1, 0.4], atol=1e-6)
    # Suppressed only when IoU > threshold: 80/120 = 0.67 goes, 70/130 = 0.54 stays.
    xyxy = np.array([[0, 0, 10, 10], [3, 0, 13, 10], [2, 0, 12, 10]], np.float32)
    assert nms(xyxy, np.array([0.9, 0.8, 0.85], np.float32), 0.6).tolist() == [0, 1]
