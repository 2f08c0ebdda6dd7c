"""The TensorFlow-free SSDLite port against TensorFlow's own outputs (vtest frame 0, 300x300).

The fixture holds frame 0 as TF saw it (RGB uint8 after cv2.resize), TF's raw box
encodings and logits, and TF's anchors, copied from the original framework's run.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from passrt.errors import PassrtError
from passrt.models import load_model
from passrt.models.anchors import feature_map_sizes, generate_anchors
from passrt.models.ssdlite import load_ssdlite_pedestrian
from passrt.models.tf_graph import read_graph

FIXTURE = np.load(Path(__file__).parent.parent / "fixtures" / "ssdlite_tf_reference.npz")


@pytest.fixture(scope="module")
def spec():
    return load_model("ssdlite-pedestrian")


def frame0(spec):
    return spec.preprocess(np.ascontiguousarray(FIXTURE["rgb"][:, :, ::-1]))  # the loader takes BGR


def test_raw_outputs_match_tensorflow(spec):
    with torch.no_grad():
        box, cls = spec.module(frame0(spec))
    box_err = np.abs(box[0].numpy() - FIXTURE["box"]).max()
    cls_err = np.abs(cls[0].numpy() - FIXTURE["cls"]).max()
    assert box_err < 1e-4 and cls_err < 1e-4, (box_err, cls_err)


def test_anchors_match_tensorflow():
    assert feature_map_sizes(300, 300) == [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    np.testing.assert_allclose(generate_anchors((300, 300)), FIXTURE["anchors"], atol=1e-6, rtol=0)


def test_frame0_detections(spec):
    with torch.no_grad():
        out = spec.module(frame0(spec))
    det = spec.postprocess(out, (300, 300))
    assert len(det.scores) == 2
    assert det.scores[0] == pytest.approx(0.97, abs=0.01) and det.scores[1] == pytest.approx(0.94, abs=0.01)
    assert np.all(det.boxes[:, 2] > det.boxes[:, 0]) and np.all(det.boxes[:, 3] > det.boxes[:, 1])


def test_native_resolution_and_anchor_count(spec):
    with torch.no_grad():
        box, cls = spec.module(torch.rand(1, 3, 576, 768))
    anchors = generate_anchors((576, 768))
    assert box.shape == (1, len(anchors), 4) and cls.shape == (1, len(anchors), 2)
    # Square in pixels: width/height ratio of the aspect-1 anchors equals 1 at 768x576.
    a = anchors[3 * 36 * 48 + 0]  # first aspect-1 anchor of the second layer
    assert (a[3] - a[1]) * 768 == pytest.approx((a[2] - a[0]) * 576, rel=1e-4)


def test_graph_reader_counts_ops():
    from passrt import assets

    ops = [n.op for n in read_graph(assets.fetch("ssdlite-pedestrian")).values()]
    assert ops.count("Conv2D") == 55 and ops.count("DepthwiseConv2dNative") == 33


def test_missing_or_corrupt_graph(tmp_path):
    with pytest.raises(PassrtError, match="cannot read"):
        load_ssdlite_pedestrian(tmp_path / "missing.pb")
    bad = tmp_path / "bad.pb"
    bad.write_bytes(b"\xff\xff\xff\xff not a graph")
    with pytest.raises(PassrtError, match="not a valid TensorFlow frozen graph"):
        load_ssdlite_pedestrian(bad)


def test_unknown_model_name():
    with pytest.raises(PassrtError, match="unknown model 'yolo'.*ssdlite-pedestrian"):
        load_model("yolo")
