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
import torch.nn.functional as F

import passrt
from passrt.errors import PassrtError
from passrt.models import load_model
from passrt.models.darknet import DarknetNet, Postprocess, from_file, load_weights, parse_cfg

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


def _as_user_files(tmp_path, name="x"):
    """The bundled cfg and weights as a user has them: ``x.cfg`` with ``x.weights`` beside it."""
    from passrt import assets

    cfg = tmp_path / f"{name}.cfg"
    cfg.write_text(Path(assets.fetch("yolov3-tiny-cfg")).read_text())
    (tmp_path / f"{name}.weights").symlink_to(Path(assets.fetch("yolov3-tiny")).resolve())
    return cfg


def test_a_cfg_path_is_the_named_model(spec, tmp_path):
    """``--model x.cfg`` and ``sparsify("x.cfg")``: the same network, outputs and decoding as ``yolov3-tiny``."""
    cfg = _as_user_files(tmp_path)
    by_path = load_model(str(cfg))
    assert by_path.name == str(cfg) and by_path.input_multiple == spec.input_multiple
    image = FIXTURE["crop"]
    want = _outputs(spec, image)
    got = _outputs(by_path, image)
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)
    a = by_path.postprocess(got, image.shape[:2])
    b = spec.postprocess(want, image.shape[:2])
    assert len(a) >= 2 and np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
    engine = passrt.sparsify(str(cfg), "exact")
    x = spec.preprocess(image)
    for g, w in zip(engine(x), want, strict=True):
        np.testing.assert_allclose(g.numpy(), w.numpy(), atol=1e-4, rtol=0)


def test_cfg_path_errors_are_one_line(tmp_path):
    cfg = tmp_path / "lonely.cfg"
    cfg.write_text("[net]\nchannels=3\n[convolutional]\nfilters=4\nsize=3\npad=1\nactivation=leaky\n")
    with pytest.raises(PassrtError, match=f"no Darknet weights for {cfg}: expected {tmp_path / 'lonely.weights'}"):
        load_model(str(cfg))
    with pytest.raises(PassrtError, match="no such Darknet file"):
        passrt.sparsify(str(tmp_path / "missing.cfg"))
    (tmp_path / "lonely.weights").write_bytes(b"")
    cfg.write_text("[net]\n[convolutional]\nsize=3\n")  # no filters
    with pytest.raises(PassrtError, match="not a Darknet cfg passrt can read"):
        load_model(str(cfg))
    cfg.write_text("[net]\n[convolutional]\nfilters=4\nsize=1\n[dropout]\n[connected]\noutput=10\n")
    with pytest.raises(PassrtError, match="Darknet layers passrt cannot import: connected, dropout"):
        load_model(str(cfg))
    cfg.write_text("[net]\nchannels=1\n[convolutional]\nfilters=1\nsize=1\n")
    header = np.array([0, 2, 0], np.int32).tobytes() + np.zeros(1, np.int64).tobytes()
    (tmp_path / "lonely.weights").write_bytes(header + np.zeros(2, np.float32).tobytes())  # a bias, a weight
    with pytest.raises(PassrtError, match="takes 1-channel images; passrt runs Darknet models on RGB frames"):
        load_model(str(cfg))


def test_a_cfg_without_yolo_layers_returns_its_last_map_raw(tmp_path):
    cfg = tmp_path / "trunk.cfg"
    cfg.write_text("[net]\nchannels=3\n[convolutional]\nfilters=4\nsize=3\npad=1\nstride=2\nactivation=leaky\n"
                   "[maxpool]\nsize=2\nstride=2\n")
    header = np.array([0, 2, 0], np.int32).tobytes() + np.zeros(1, np.int64).tobytes()
    weights = np.random.default_rng(0).normal(size=4 + 4 * 27).astype(np.float32)
    (tmp_path / "trunk.weights").write_bytes(header + weights.tobytes())
    model = from_file(cfg)
    assert model.postprocess is None
    x = torch.rand(1, 3, 64, 96)
    (out,) = model.module(x)
    assert out.shape == (1, 4, 16, 24)
    conv = model.module.layers[0][0]
    want = F.max_pool2d(F.leaky_relu(conv(x), 0.1), 2)
    assert torch.equal(out, want)


def test_route_groups_take_one_channel_slice(tmp_path):
    """``route`` with ``groups`` (yolov4-tiny's CSP blocks: Darknet's route_layer reads part ``group_id``
    of ``groups`` equal channel slices of each source) against the network written out by hand, on a
    small random network; then exact@0 under the sparse engine. (This OpenCV build has no Darknet
    importer to compare with.)"""
    cfg = tmp_path / "csp.cfg"
    cfg.write_text("[net]\nwidth=64\nheight=64\nchannels=3\n"
                   "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
                   "[route]\nlayers=-1\ngroups=2\ngroup_id=1\n"
                   "[convolutional]\nbatch_normalize=1\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
                   "[route]\nlayers=-1,-2\n"
                   "[maxpool]\nsize=2\nstride=2\n"
                   "[convolutional]\nfilters=6\nsize=1\nstride=1\npad=1\nactivation=linear\n")
    rng = np.random.default_rng(0)

    def bn_conv(cin, cout, k):  # beta, gamma, mean, variance, kernel
        return [rng.normal(size=cout), rng.uniform(0.5, 1.5, cout), rng.normal(size=cout) * 0.1,
                rng.uniform(0.5, 1.5, cout), rng.normal(size=cout * cin * k * k) * 0.3]

    values = bn_conv(3, 8, 3) + bn_conv(4, 4, 3) + [rng.normal(size=6), rng.normal(size=6 * 8) * 0.3]
    header = np.array([0, 2, 0], np.int32).tobytes() + np.zeros(1, np.int64).tobytes()
    (tmp_path / "csp.weights").write_bytes(header + np.concatenate(values).astype(np.float32).tobytes())
    model = from_file(cfg)
    x = torch.rand(1, 3, 64, 64)
    (got,) = model.module(x)
    conv = [model.module.layers[i][0] for i in (0, 2, 5)]
    with torch.no_grad():
        a = F.leaky_relu(conv[0](x), 0.1)
        half = a[:, 4:]  # group_id 1 of 2
        b = F.leaky_relu(conv[1](half), 0.1)
        want = conv[2](F.max_pool2d(torch.cat([b, half], 1), 2))
    assert got.shape == want.shape == (1, 6, 32, 32)
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    engine = passrt.sparsify(model.module, "exact", scene_cut=1.0)
    engine(x)
    moved = x.clone()
    moved[:, :, 8:24, 40:56] = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        (want_moved,) = model.module(moved)
    (got_moved,) = engine(moved)
    torch.testing.assert_close(got_moved, want_moved, atol=1e-5, rtol=0)
    assert engine.stats()["active_fraction"] < 0.9
