"""ONNX models in: each imported op against ONNX Runtime, the sparse engine against ONNX Runtime's
dense outputs, and two real ONNX CNNs from PyPI packages (nobody wrote them for passrt).

Every expected value is ONNX Runtime running the file itself."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

import passrt
from passrt.errors import PassrtError
from passrt.models import load_model
from passrt.models.onnx_import import load_onnx


def _model(nodes, inits, c_in=3, c_out=None, nhwc=False, opset=13, outputs=("y",)):
    shape = ["N", "H", "W", c_in] if nhwc else ["N", c_in, "H", "W"]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        [numpy_helper.from_array(np.asarray(v, dtype=np.float32 if np.asarray(v).dtype.kind == "f" else np.int64), k)
         for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _frames(h, w, n=5, seed=0):
    """A frame, then local changes of growing size (so every op sees changed and unchanged tiles)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h, w, generator=gen)
    out = [x]
    for t in range(1, n):
        x = x.clone()
        y0, x0 = (t * 3) % (h - 4), (t * 5) % (w - 5)
        x[:, :, y0:y0 + 3 + t, x0:x0 + 4] = torch.rand(1, 3, min(3 + t, h - y0), min(4, w - x0), generator=gen)
        out.append(x)
    return out


def _check(model, tmp_path, h=13, w=17, nhwc=False, atol=1e-5):
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    module, info = load_onnx(path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    engine = passrt.sparsify(module, "exact", scene_cut=1.0, tile_px=4)
    for t, x in enumerate(_frames(h, w)):
        feed = x.permute(0, 2, 3, 1).numpy().copy() if nhwc else x.numpy()
        want = sess.run(None, {"x": feed})
        got = engine(x)
        for g, e in zip(got, want):
            np.testing.assert_allclose(g.numpy(), e, atol=atol, rtol=1e-4, err_msg=f"frame {t}")
    return engine


def _conv(name, src, dst, c_in, c_out, k=3, **attrs):
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    inits = {f"{name}_w": rng.normal(size=(c_out, c_in // attrs.get("group", 1), k, k)) * 0.3,
             f"{name}_b": rng.normal(size=c_out)}
    node = helper.make_node("Conv", [src, f"{name}_w", f"{name}_b"], [dst], kernel_shape=[k, k], **attrs)
    return node, inits


def _ops_case(ops, **kw):
    """conv -> ops -> conv: the ops sit between two sparse convs."""
    first, i1 = _conv("c1", "x", "a", 3, 8, pads=[1, 1, 1, 1])
    last, i2 = _conv("c2", "b", "y", kw.pop("c_mid", 8), 4, pads=[1, 1, 1, 1])
    nodes, inits = ops
    return [first, *nodes, last], {**i1, **i2, **inits}


CASES = {
    "conv asymmetric pads": lambda: _ops_case(([helper.make_node("Conv", ["a", "w", "bias"], ["b"], kernel_shape=[3, 3],
                                                                 pads=[0, 1, 2, 1], strides=[2, 1])],
                                               {"w": np.random.default_rng(0).normal(size=(8, 8, 3, 3)) * 0.2,
                                                "bias": np.zeros(8)})),
    "conv SAME_UPPER stride 2": lambda: _ops_case(([helper.make_node("Conv", ["a", "w", "bias"], ["b"], kernel_shape=[3, 3],
                                                                     auto_pad="SAME_UPPER", strides=[2, 2], group=8)],
                                                   {"w": np.random.default_rng(1).normal(size=(8, 1, 3, 3)),
                                                    "bias": np.ones(8)})),
    "conv transpose": lambda: _ops_case(([helper.make_node("ConvTranspose", ["a", "w"], ["b"], kernel_shape=[4, 4],
                                                           strides=[2, 2], pads=[1, 1, 1, 1], group=2)],
                                         {"w": np.random.default_rng(2).normal(size=(8, 4, 4, 4)) * 0.2})),
    "conv transpose output_padding": lambda: _ops_case(([helper.make_node(
        "ConvTranspose", ["a", "w", "bias"], ["b"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
        output_padding=[1, 1])], {"w": np.random.default_rng(3).normal(size=(8, 8, 3, 3)) * 0.2,
                                  "bias": np.arange(8) * 0.1})),
    "maxpool SAME_UPPER": lambda: _ops_case(([helper.make_node("MaxPool", ["a"], ["b"], kernel_shape=[2, 2],
                                                               strides=[2, 2], auto_pad="SAME_UPPER")], {})),
    "maxpool 3x3 s2 pads": lambda: _ops_case(([helper.make_node("MaxPool", ["a"], ["b"], kernel_shape=[3, 3],
                                                                strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)], {})),
    "avgpool": lambda: _ops_case(([helper.make_node("AveragePool", ["a"], ["b"], kernel_shape=[3, 3],
                                                    strides=[1, 1], pads=[1, 1, 1, 1])], {})),
    "resize nearest x2 asymmetric": lambda: _ops_case(([helper.make_node(
        "Resize", ["a", "", "s"], ["b"], mode="nearest", coordinate_transformation_mode="asymmetric",
        nearest_mode="floor")], {"s": np.array([1, 1, 2, 2], np.float32)})),
    "resize nearest x2 half_pixel": lambda: _ops_case(([helper.make_node(
        "Resize", ["a", "", "s"], ["b"], mode="nearest")], {"s": np.array([1, 1, 2, 2], np.float32)})),
    "resize linear x2 half_pixel": lambda: _ops_case(([helper.make_node(
        "Resize", ["a", "", "s"], ["b"], mode="linear")], {"s": np.array([1, 1, 2, 2], np.float32)})),
    "resize linear align_corners": lambda: _ops_case(([helper.make_node(
        "Resize", ["a", "", "s"], ["b"], mode="linear", coordinate_transformation_mode="align_corners")],
        {"s": np.array([1, 1, 2, 2], np.float32)})),
    "pad reflect": lambda: _ops_case(([helper.make_node("Pad", ["a", "p"], ["b"], mode="reflect")],
                                      {"p": np.array([0, 0, 1, 2, 0, 0, 2, 1])})),
    "pad constant": lambda: _ops_case(([helper.make_node("Pad", ["a", "p", "v"], ["b"])],
                                       {"p": np.array([0, 0, 0, 1, 0, 0, 2, 0]), "v": np.array(0.5, np.float32)})),
    "slice channels": lambda: _ops_case(([helper.make_node("Slice", ["a", "st", "en", "ax"], ["b"])],
                                         {"st": np.array([2]), "en": np.array([7]), "ax": np.array([1])}), c_mid=5),
    "split + concat": lambda: _ops_case(([helper.make_node("Split", ["a", "sp"], ["s0", "s1"], axis=1),
                                          helper.make_node("Relu", ["s0"], ["r0"]),
                                          helper.make_node("Concat", ["s1", "r0"], ["b"], axis=1)],
                                         {"sp": np.array([3, 5])})),
    "depth to space CRD": lambda: _ops_case(([helper.make_node("DepthToSpace", ["a"], ["b"], blocksize=2, mode="CRD")],
                                             {}), c_mid=2),
    "hardsigmoid, clip, prelu": lambda: _ops_case(([
        helper.make_node("HardSigmoid", ["a"], ["h"], alpha=0.2, beta=0.5),
        helper.make_node("Clip", ["a", "lo", "hi"], ["c"]),
        helper.make_node("Mul", ["h", "c"], ["m"]),
        helper.make_node("PRelu", ["m", "slope"], ["b"])],
        {"lo": np.array(0, np.float32), "hi": np.array(6, np.float32),
         "slope": np.linspace(0.1, 0.8, 8).reshape(8, 1, 1)})),
    "squeeze-excite": lambda: _ops_case(([
        helper.make_node("GlobalAveragePool", ["a"], ["g"]),
        helper.make_node("Sigmoid", ["g"], ["s"]),
        helper.make_node("Mul", ["a", "s"], ["b"])], {})),
    "channel softmax": lambda: _ops_case(([helper.make_node("Softmax", ["a"], ["b"], axis=1)], {})),
}


@pytest.mark.parametrize("name", list(CASES))
def test_imported_ops_equal_onnxruntime_frame_after_frame(name, tmp_path):
    nodes, inits = CASES[name]()
    _check(_model(nodes, inits), tmp_path)


def test_shape_arithmetic_of_a_detection_head(tmp_path):
    """A YOLOv8-style head: flatten by a run-time shape, anchors from Range/Expand/ConstantOfShape."""
    conv, inits = _conv("c", "x", "a", 3, 4, pads=[1, 1, 1, 1])
    nodes = [conv,
             helper.make_node("Shape", ["a"], ["s"]),
             helper.make_node("Slice", ["s", "zero", "two"], ["s01"]),
             helper.make_node("Concat", ["s01", "minus1"], ["flat_shape"], axis=0),
             helper.make_node("Reshape", ["a", "flat_shape"], ["y"]),
             helper.make_node("Gather", ["s", "three"], ["width"], axis=0),
             helper.make_node("Cast", ["width"], ["width_f"], to=TensorProto.FLOAT),
             helper.make_node("Range", ["zero_f", "width_f", "one_f"], ["xs"]),
             helper.make_node("Expand", ["xs", "rows"], ["grid"]),
             helper.make_node("ConstantOfShape", ["rows"], ["half"],
                              value=numpy_helper.from_array(np.array([0.5], np.float32))),
             helper.make_node("Add", ["grid", "half"], ["anchors"])]
    inits.update({"zero": np.array([0]), "two": np.array([2]), "minus1": np.array([-1]), "three": np.array(3),
                  "zero_f": np.array(0, np.float32), "one_f": np.array(1, np.float32), "rows": np.array([2, 1])})
    _check(_model(nodes, inits, outputs=("y", "anchors")), tmp_path)


def test_nhwc_input_transpose_is_absorbed(tmp_path):
    conv, inits = _conv("c", "t", "c_out", 3, 4, pads=[1, 1, 1, 1])
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2]), conv,
             helper.make_node("Transpose", ["c_out"], ["y"], perm=[0, 2, 3, 1])]
    model = _model(nodes, inits, nhwc=True)
    onnx.save(model, tmp_path / "m.onnx")
    assert load_onnx(tmp_path / "m.onnx")[1].input_layout == "nhwc"
    engine = _check(model, tmp_path, nhwc=True)
    assert any(v["kind"] == "conv" and v["mode"] == "sparse" for v in engine.stats()["layers"].values())


def test_unsupported_ops_are_named_in_one_line(tmp_path):
    conv, inits = _conv("c", "x", "a", 3, 4)
    nodes = [conv, helper.make_node("Einsum", ["a"], ["e"], equation="nchw->nchw"),
             helper.make_node("LpNormalization", ["e"], ["y"])]
    onnx.save(_model(nodes, inits), tmp_path / "m.onnx")
    with pytest.raises(PassrtError) as err:
        load_onnx(tmp_path / "m.onnx")
    message = str(err.value)
    assert "\n" not in message and "Einsum" in message and "LpNormalization" in message


def test_sparsify_takes_a_path(tmp_path):
    conv, inits = _conv("c", "x", "y", 3, 4, pads=[1, 1, 1, 1])
    onnx.save(_model([conv], inits), tmp_path / "m.onnx")
    engine = passrt.sparsify(str(tmp_path / "m.onnx"))
    x = torch.rand(1, 3, 9, 10)
    want = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})
    np.testing.assert_allclose(engine(x)[0].numpy(), want[0], atol=1e-5)
    with pytest.raises(PassrtError, match="no such ONNX file"):
        passrt.sparsify(str(tmp_path / "missing.onnx"))
    with pytest.raises(PassrtError, match=r"m.pt: not a model file passrt reads \(suffixes: .onnx, .cfg\)"):
        passrt.sparsify(tmp_path / "m.pt")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ppocr-det", "mtcnn-pnet"])
def test_registry_models_exact_equal_onnxruntime_on_real_frames(name):
    """Real ONNX CNNs from PyPI packages, on real frames of vtest (reduced to keep the test short):
    exact at threshold 0 equals ONNX Runtime running the file, frame after frame. The camera's
    noise changes every pixel of a real frame at threshold 0, so each later frame is the first one
    with a growing region pasted from a real later frame: real content, and a sparse path to take."""
    from passrt.runtime.backends import DenseOnnxRuntime, OnnxRuntimeFile
    from passrt.runtime.frames import read_frames

    spec = load_model(name)
    clip = read_frames("vtest", 5, size=(192, 256), start=100, preprocess=spec.preprocess)
    dense = OnnxRuntimeFile(spec.onnx)
    # The same with ONNX Runtime as the dense engine: it fills the caches on the first frame (the model
    # exported back from passrt's import, every cache an output), and the sparse frames run on them.
    filled_by_ort = DenseOnnxRuntime(spec.module, name, spec.onnx)
    own = passrt.sparsify(spec.module, "exact")
    for engine in (own, passrt.sparsify(spec.module, "exact", dense_engine=filled_by_ort)):
        active = []
        for t, later in enumerate(clip.frames):
            x = clip.frames[0].clone()
            x[:, :, 40:40 + 20 * t, 60:60 + 25 * t] = later[:, :, 40:40 + 20 * t, 60:60 + 25 * t]
            got, want = engine(x), dense(x)
            active.append(engine.stats()["active_fraction"])
            assert len(got) == len(want)
            for g, e in zip(got, want):
                torch.testing.assert_close(g, e, atol=2e-4, rtol=1e-4, msg=lambda m: f"{name} frame {t}: {m}")
        assert min(active[1:]) < 1.0  # later frames ran sparse
    # (with a dense engine, frames predicted to spread over half the network are dense: filled or answered by it)
    assert own.stats()["refreshes"] == 1
    assert engine.stats()["dense_engine_fills"] >= 1 and not filled_by_ort.fill_failed
