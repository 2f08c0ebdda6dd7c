"""The engine's two executors: the pure-PyTorch reference and passrt's compiled op (through the
same SparseProgram the exporter uses). Both must give the same outputs frame after frame."""

import pytest
import torch

import passrt
from passrt.errors import PassrtError
from passrt.runtime.frames import read_frames
from passrt.models import load_model
from tests.conftest import require_cuda_op, require_op

SIZE = (144, 192)


def _need_op():
    require_op()  # fails with the compiler's message where a compiler exists (tests/conftest.py)


@pytest.fixture(scope="module")
def ssdlite_frames():
    spec = load_model("ssdlite-pedestrian")
    return spec, read_frames("vtest", 5, SIZE, preprocess=spec.preprocess).frames


def _compare(spec, frames, device, atol):
    reference = passrt.sparsify(spec.module, "regiondrop", executor="reference")
    op = passrt.sparsify(spec.module, "regiondrop", executor="op" if device == "cpu" else "auto")
    partial = 0
    for x in frames:
        expected, got = reference(x), op(x.to(device))
        for a, b in zip(expected, got):
            torch.testing.assert_close(b.cpu(), a, rtol=0, atol=atol)
        active = reference.stats()["active_fraction"]
        assert op.stats()["active_fraction"] == pytest.approx(active, abs=1e-5)
        partial += 0 < active < 0.9
    assert partial >= 3
    return op.stats()


def test_op_executor_equals_reference_on_real_frames(ssdlite_frames):
    _need_op()
    stats = _compare(*ssdlite_frames, "cpu", 1e-4)
    assert stats["executor"] == "passrt op (CPU)"


@pytest.mark.cuda
def test_cuda_op_executor_equals_reference_on_real_frames(ssdlite_frames):
    require_cuda_op()
    stats = _compare(*ssdlite_frames, "cuda", 1e-3)
    assert stats["executor"] == "passrt op (CUDA)"


def test_auto_uses_the_reference_for_cpu_tensors(ssdlite_frames):
    spec, frames = ssdlite_frames
    engine = passrt.sparsify(spec.module, "regiondrop")
    engine(frames[0])
    assert engine.stats()["executor"] == "reference (pure PyTorch)" and "executor_note" not in engine.stats()


def test_executor_errors(ssdlite_frames):
    spec, frames = ssdlite_frames
    with pytest.raises(PassrtError, match="unknown executor 'gpu'"):
        passrt.sparsify(spec.module, "regiondrop", executor="gpu")
    exact = passrt.sparsify(spec.module, "exact", executor="op")
    with pytest.raises(PassrtError, match="executor 'op' is not available: policy 'exact'"):
        exact(frames[0])


def test_op_executor_runs_pass_gates_like_the_reference(ssdlite_frames):
    _need_op()
    from passrt.policies import PassGates
    from passrt.policies.gate import GateConfig
    from passrt.policies.gateset import GateSet
    from passrt.training.train import TILES, plan_steps

    spec, frames = ssdlite_frames
    torch.manual_seed(3)  # untrained gates: mixed decisions
    gates = GateSet.for_steps(spec.name, plan_steps(spec.module, frames[0]), GateConfig(), TILES)
    reference = passrt.sparsify(spec.module, PassGates.from_gates(gates), executor="reference")
    op = passrt.sparsify(spec.module, PassGates.from_gates(gates), executor="op")
    for x in frames:
        for a, b in zip(reference(x), op(x)):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-4)
        assert op.stats()["active_fraction"] == pytest.approx(reference.stats()["active_fraction"], abs=1e-5)
    assert op.stats()["executor"] == "passrt op (CPU)"


def test_op_executor_runs_decoders_like_the_reference():
    """Transposed convs and moves (pad, pixel shuffle, channel slices) in the program: computed
    densely and kept on the active tiles (reported in fallback_layers), equal to the reference."""
    _need_op()
    from tests.engine.random_nets import DecoderNet, _init

    conv = dict(cout=6, k=3, s=2, d=1, dw=False, same=False, act=0, bn=True)
    up = dict(cout=4, k=4, s=2, d=1, pad=1, op=0, dw=False, act=1, bn=True)
    torch.manual_seed(0)
    net = _init(DecoderNet([conv, conv], [("up", up), ("shuffle", "reflect"), ("up", up)]))
    reference = passrt.sparsify(net, "regiondrop", threshold=0.05, executor="reference")
    op = passrt.sparsify(net, "regiondrop", threshold=0.05, executor="op")
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, 3, 64, 80, generator=gen)
    for t in range(4):
        x = x.clone()
        x[:, :, 8 * t:8 * t + 12, 10:30] = torch.rand(1, 3, 12, 20, generator=gen)
        for a, b in zip(reference(x), op(x)):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-4)
        assert op.stats()["active_fraction"] == pytest.approx(reference.stats()["active_fraction"], abs=1e-5)
    assert 0 < reference.stats()["active_fraction"] < 0.9
    program = op.executor.program
    assert [s.label for s in program.spatial if s.kind == "conv_transpose"] == program.fallback_layers
