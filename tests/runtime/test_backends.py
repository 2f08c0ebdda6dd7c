"""Every runtime backend behind one protocol, made by one factory."""

import pytest
import torch

from passrt.errors import PassrtError
from passrt.models import load_model
from passrt.runtime.backends import open_backend


@pytest.fixture(scope="module")
def model():
    return load_model("ssdlite-pedestrian")


@pytest.mark.parametrize("spec, kind, label", [
    ("torch:dense", "torch", "dense"), ("dense", "torch", "dense"),
    ("torch:regiondrop:margin=0", "torch", "regiondrop:margin=0"), ("exact", "torch", "exact"),
    ("ort", "onnxruntime", "onnxruntime"),
])
def test_open_backend(model, spec, kind, label):
    x = torch.rand(1, 3, 96, 128)
    backend = open_backend(spec, model, x)
    assert backend.label == label and backend.describe()["backend"] == kind
    first = backend(x)
    assert 0.0 <= backend.stats()["active_fraction"] <= 1.0
    backend.reset()
    again = backend(x)  # after reset: computed in full again, same answer
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b)
    if spec.startswith("torch:regiondrop"):
        assert backend.stats()["refresh"] and backend.tile_masks()


def test_bad_specs(model):
    with pytest.raises(PassrtError, match="unknown policy 'nope'"):
        open_backend("nope", model)
    with pytest.raises(PassrtError, match="trt: needs an engine file"):
        open_backend("trt:", model)
    with pytest.raises(PassrtError, match="needs an example frame"):
        open_backend("ort", model)


def test_sparse_backends_answer_dense_frames_with_onnxruntime_on_cpu(model):
    """By default ONNX Runtime answers the second of two frames in a row that must be dense (a camera that
    moves); --dense-engine none: passrt computes them."""
    x, y, z = (torch.rand(1, 3, 96, 128) for _ in range(3))  # everything changes from frame to frame
    ort, own = open_backend("regiondrop", model), open_backend("regiondrop", model, dense_engine=None)
    reference = open_backend("ort", model, x)
    ort(x), ort(y)
    assert not ort.stats()["dense_engine"]  # the first frame, and the first that had to be dense: passrt's
    out = ort(z)
    assert ort.stats()["dense_engine"] and ort.describe()["dense_engine"] == "onnxruntime"
    for a, b in zip(reference(z), out):
        torch.testing.assert_close(b, a, rtol=0, atol=0)  # ONNX Runtime's answer as it is
    own(x), own(y)
    assert not own.stats()["dense_engine"] and own.describe()["dense_engine"] is None
    with pytest.raises(PassrtError, match="unknown dense engine 'tensorrt'"):
        open_backend("regiondrop", model, dense_engine="tensorrt")


def test_onnxruntime_fills_the_caches_of_the_frames_it_computes(model):
    """A sparse backend's first frame is ONNX Runtime's: it writes every cache (bound by address), which then
    hold what passrt's own dense frame computes; the next frames run sparse on them as on passrt's."""
    frames = [torch.rand(1, 3, 96, 128)]
    frames.append(frames[0].clone())
    frames[1][..., 40:60, 50:80] = torch.rand(1, 3, 20, 30)  # a small change: a sparse frame
    ort, own = open_backend("regiondrop", model), open_backend("regiondrop", model, dense_engine=None)
    for i, x in enumerate(frames):
        out, expected = ort(x), own(x)
        assert ort.stats()["dense_engine_filled"] == (i == 0) and ort.stats()["refresh"] == (i == 0)
        for a, b in zip(expected, out):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-4)
        if i == 0:
            caches = own.model.executor.env
            filled = [name for name, v in ort.model.executor.env.items() if hasattr(v, "nhwc")]
            assert len(filled) > 50
            for name in filled:
                torch.testing.assert_close(ort.model.executor.env[name].nhwc(), caches[name].nhwc(), rtol=0, atol=1e-4)
    assert ort.describe()["dense_engine_fills"] == 1 and ort.stats()["active_fraction"] < 0.5
