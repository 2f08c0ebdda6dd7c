"""The engine's executors: the pure-PyTorch reference, the native executor (the reference with its
convs in passrt's C++ tile kernels) and passrt's compiled op (through the same SparseProgram the
exporter uses). All must give the reference's outputs frame after frame."""

import copy

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import passrt
from passrt.errors import PassrtError
from passrt.runtime.frames import read_frames
from passrt.models import load_model
from tests.conftest import require_cuda_op, require_op
from tests.engine.random_nets import decoder_networks, networks
from tests.engine.test_exact_equals_dense import change_sequence

SIZE = (144, 192)


def _need_op():
    require_op()  # fails with the compiler's message where a compiler exists (tests/conftest.py)


@pytest.fixture(scope="module")
def ssdlite_frames():
    spec = load_model("ssdlite-pedestrian")
    return spec, read_frames("vtest", 5, SIZE, preprocess=spec.preprocess).frames


def _compare(spec, frames, device, atol):
    reference = passrt.sparsify(spec.module, "regiondrop", executor="reference")
    module = spec.module if device == "cpu" else copy.deepcopy(spec.module).to(device)  # traced on its frames
    op = passrt.sparsify(module, "regiondrop", executor="op")
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


@pytest.mark.parametrize("in_place", [True, False], ids=["in-place", "tensor-ops"])
@pytest.mark.parametrize("policy,threshold", [("exact", 0.05), ("exact", "auto"), ("layerwise", "auto")])
def test_op_executor_runs_exact_and_layerwise_like_the_reference(policy, threshold, in_place, monkeypatch):
    """exact's and layerwise's rules for the op executor (ExactMasks, LayerWiseMasks) decide the reference's
    tiles, frame after frame: in place in passrt's kernels (CPU frames), and as standard tensor ops."""
    _need_op()
    from passrt.kernels import native

    calls = []
    for name in ("pixel_changes_", "row_changes_"):  # count the in-place kernels' calls
        kernel = getattr(native, name)
        monkeypatch.setattr(native, name, lambda *a, _k=kernel, _n=name: calls.append(_n) or _k(*a))
    spec = load_model("ssdlite-pedestrian")
    frames = read_frames("vtest", 8, SIZE, preprocess=spec.preprocess).frames
    reference = passrt.sparsify(spec.module, policy, threshold=threshold, executor="reference")
    op = passrt.sparsify(spec.module, policy, threshold=threshold, executor="op")
    if not in_place:
        from passrt.policies.exact import ExactMasks  # LayerWiseMasks' too

        monkeypatch.setattr(ExactMasks, "in_place_ok", lambda self, image: False)
    partial = 0
    for x in frames:
        for a, b in zip(reference(x), op(x)):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-4)
        active = reference.stats()["active_fraction"]
        assert op.stats()["active_fraction"] == pytest.approx(active, abs=1e-6)
        partial += 0 < active < 0.9
    assert partial >= 5 and op.stats()["executor"] == "passrt op (CPU)"
    expected = {"pixel_changes_"} | ({"row_changes_"} if policy == "layerwise" else set())
    assert set(calls) == (expected if in_place else set())  # the reference executor runs no native kernel


def test_op_executor_on_cpu_runs_the_tile_kernels(ssdlite_frames, monkeypatch):
    """On CPU the op executor keeps its maps channels-last and runs every SSDLite conv through conv_tiles
    (and the input normalisation through affine_tiles), never the NCHW twins, equal to the reference."""
    _need_op()
    from passrt.kernels import extension

    def twins(*args, **kwargs):
        raise AssertionError("the NCHW twin kernel ran")

    monkeypatch.setattr(extension, "sparse_conv2d_op", twins)
    _compare(*ssdlite_frames, "cpu", 1e-4)
    op = passrt.sparsify(ssdlite_frames[0].module, "regiondrop", executor="op")
    op(ssdlite_frames[1][0])
    program = op.executor.program
    assert len(program._affines) == 2  # x * 2 - 1
    assert all(t.is_contiguous(memory_format=torch.channels_last) for t in op.executor.loop.state.values()
               if t.dim() == 4)


def test_op_executor_runs_each_fused_pair_in_one_kernel_call(ssdlite_frames, monkeypatch):
    """A conv with a fused 1x1 after it (SSDLite's depthwise + projection) is one conv_tiles call with the 1x1
    fused, as the native executor runs it (its intermediate never written whole), equal to the reference, on
    sparse and on dense frames."""
    _need_op()
    from passrt.engine.program import OpNode

    spec, frames = ssdlite_frames
    pairs = []
    pair = OpNode.pair
    monkeypatch.setattr(OpNode, "pair", lambda self, *a: pairs.append(pair(self, *a)) or pairs[-1])
    op = passrt.sparsify(spec.module, "exact", threshold="auto", executor="op")
    reference = passrt.sparsify(spec.module, "exact", threshold="auto", executor="reference")
    for x in frames:
        pairs.clear()
        for a, b in zip(reference(x), op(x)):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-4)
        fused = [s for s in op.executor.plan.steps if getattr(s, "follow", None) is not None]
        assert len(fused) >= 10 and len(pairs) == len(fused) and all(p is not None for p in pairs)


@pytest.mark.cuda
def test_cuda_op_executor_equals_reference_on_real_frames(ssdlite_frames):
    require_cuda_op()
    stats = _compare(*ssdlite_frames, "cuda", 1e-3)
    assert stats["executor"] == "passrt op (CUDA)"


def test_auto_uses_the_native_executor_for_cpu_tensors(ssdlite_frames):
    _need_op()
    spec, frames = ssdlite_frames
    engine = passrt.sparsify(spec.module, "regiondrop")
    engine(frames[0])
    assert engine.stats()["executor"] == "native (C++ tile kernels, CPU)" and "executor_note" not in engine.stats()
    assert engine.executor.native_fraction() == 1.0  # every SSDLite conv runs in the kernels


def test_auto_falls_back_to_the_reference_when_the_op_cannot_build(ssdlite_frames, monkeypatch):
    from passrt.kernels import extension

    monkeypatch.setattr(extension, "load", lambda verbose=False: False)
    spec, frames = ssdlite_frames
    engine = passrt.sparsify(spec.module, "regiondrop")
    engine(frames[0])
    assert engine.stats()["executor"] == "reference (pure PyTorch)"
    assert "the passrt op is" in engine.stats()["executor_note"]
    with pytest.raises(PassrtError, match="executor 'native' is not available"):
        passrt.sparsify(spec.module, "regiondrop", executor="native")(frames[0])


NATIVE_FRAMES = 100
# (policy, parameters, tolerance). layerwise tests a feature difference against a threshold, so a
# rounding difference between the kernels' GEMMs and PyTorch's can flip a cell near it: the outputs
# then differ by about that cell's contribution, never by a drift (test_no_drift.py bounds it).
NATIVE_POLICIES = [("exact", {"threshold": 0.05}, 2e-4), ("exact", {"threshold": "auto"}, 2e-4),
                   ("regiondrop", {}, 2e-4), ("layerwise", {}, 1e-2), ("pass", {}, 2e-4)]


@pytest.fixture(scope="module")
def long_clip():
    spec = load_model("ssdlite-pedestrian")
    return spec, read_frames("vtest", NATIVE_FRAMES, SIZE, preprocess=spec.preprocess).frames


def _policy(spec, frames, name, params):
    if name != "pass":
        return name, params
    from passrt.policies import PassGates
    from passrt.policies.gate import GateConfig
    from passrt.policies.gateset import GateSet
    from passrt.training.train import TILES, plan_steps

    torch.manual_seed(3)  # untrained gates: mixed decisions
    gates = GateSet.for_steps(spec.name, plan_steps(spec.module, frames[0]), GateConfig(), TILES)
    return PassGates.from_gates(gates), {}


@pytest.mark.slow
@pytest.mark.parametrize("policy,params,atol", NATIVE_POLICIES, ids=lambda v: str(v))
def test_native_executor_equals_reference_on_real_frames(long_clip, policy, params, atol):
    """100 vtest frames, every policy: the reference's outputs, tiles and refreshes."""
    _need_op()
    spec, frames = long_clip
    policy, params = _policy(spec, frames, policy, params)
    reference = passrt.sparsify(spec.module, policy, executor="reference", **params)
    native = passrt.sparsify(spec.module, copy.deepcopy(policy) if params == {} and not isinstance(policy, str)
                             else policy, executor="native", **params)
    sparse_frames = 0
    for x in frames:
        for a, b in zip(reference(x), native(x)):
            torch.testing.assert_close(b, a, rtol=0, atol=atol)
        r, n = reference.stats(), native.stats()
        assert n["refresh"] == r["refresh"]
        assert n["active_fraction"] == pytest.approx(r["active_fraction"], abs=0 if atol < 1e-3 else 0.01)
        sparse_frames += not r["refresh"] and r["active_fraction"] < 0.9
    assert native.stats()["executor"] == "native (C++ tile kernels, CPU)"
    assert sparse_frames >= NATIVE_FRAMES // 4, "the clip must exercise sparse frames"


def test_native_exact_at_threshold_0_equals_dense(ssdlite_frames):
    _need_op()
    spec, frames = ssdlite_frames
    native = passrt.sparsify(spec.module, "exact", executor="native")
    with torch.no_grad():
        for x in frames:
            for a, b in zip(spec.module(x), native(x)):
                torch.testing.assert_close(b, a, rtol=0, atol=2e-4)
    assert native.stats()["executor"] == "native (C++ tile kernels, CPU)"


def test_executor_errors(ssdlite_frames):
    spec, frames = ssdlite_frames
    with pytest.raises(PassrtError, match="unknown executor 'gpu'"):
        passrt.sparsify(spec.module, "regiondrop", executor="gpu")
    dense = passrt.sparsify(spec.module, "dense", executor="op")  # no mask source: nothing to run sparse
    with pytest.raises(PassrtError, match="executor 'op' is not available: policy 'dense'"):
        dense(frames[0])


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


class CountingDense:
    """A dense engine that is the model itself, counting its calls."""

    def __init__(self, module):
        self.module, self.calls = module, 0

    def __call__(self, x):
        self.calls += 1
        return self.module(x)


@pytest.mark.parametrize("executor,policy", [("reference", "regiondrop"), ("native", "regiondrop"),
                                             ("native", "exact"), ("native", "layerwise")])
def test_dense_engine_answers_dense_frames_and_the_caches_catch_up(ssdlite_frames, executor, policy):
    """Consecutive frames that must be dense go to the dense engine from the second on (its outputs as
    they are); the first of them, and the next calm frame after them, are computed dense by passrt
    (the caches filled), then frames run sparse again."""
    if executor == "native":
        _need_op()
    spec, frames = ssdlite_frames
    cut = torch.flip(frames[0], dims=[2, 3])  # another picture: most blocks change
    clip = [frames[0], frames[1], cut, frames[0], cut, cut, frames[2]]
    dense = CountingDense(spec.module)
    params = {"threshold": "auto"} if policy == "exact" else {}
    engine = passrt.sparsify(spec.module, policy, executor=executor, dense_engine=dense, **params)
    seen = []
    with torch.no_grad():
        for x in clip:
            if engine.executor is not None:  # passrt's dense frame as fast as the engine's: catching up pays at once
                engine.executor.pinned_seconds = (1.0, 1.0)
            out = engine(x)
            st = engine.stats()
            seen.append((st["dense_engine"], st["refresh"]))
            if st["refresh"]:  # answered densely, by the engine or by passrt's refresh
                for a, b in zip(spec.module(x), out):
                    torch.testing.assert_close(b, a, rtol=0, atol=2e-4)
            else:
                assert st["active_fraction"] < 0.95  # a sparse frame on filled caches
    # first frame (passrt), sparse, an isolated cut (passrt), two more cuts in a row (the engine),
    # the same picture again (calm: passrt fills the caches), a cut after a calm frame (passrt)
    assert seen == [(False, True), (False, False), (False, True), (True, True), (True, True), (False, True),
                    (False, True)]
    assert engine.stats()["dense_engine_frames"] == dense.calls == 2


class FillingDense(CountingDense):
    """A dense engine that can also fill the caches (the model's cached values computed in PyTorch, written into
    the buffers), as ONNX Runtime's does; ``can_fill=False``: it says it cannot."""

    def __init__(self, module, can_fill=True):
        super().__init__(module)
        self.can_fill, self.fills = can_fill, 0

    def fill(self, x, values, buffers):
        self.fills += 1
        if not self.can_fill:
            return False
        for value, buffer in zip(values(x), buffers):
            buffer.copy_(value)
        return True


@pytest.mark.parametrize("executor,policy", [("reference", "regiondrop"), ("native", "regiondrop"),
                                             ("native", "exact"), ("native", "layerwise")])
def test_a_dense_engine_that_can_fill_the_caches_computes_the_dense_frames(ssdlite_frames, executor, policy):
    """Frames whose caches must be filled (the first, an isolated cut, the catch-up) are the dense engine's too
    when it can write the caches: every cache then holds what passrt's own dense frame computes, and the sparse
    frames after it give what they give after passrt's own."""
    if executor == "native":
        _need_op()
    spec, frames = ssdlite_frames
    cut = torch.flip(frames[0], dims=[2, 3])
    clip = [frames[0], frames[1], cut, frames[0], cut, cut, frames[2]]
    params = {"threshold": "auto"} if policy == "exact" else {}
    dense = FillingDense(spec.module)
    engine = passrt.sparsify(spec.module, policy, executor=executor, dense_engine=dense, **params)
    own = passrt.sparsify(spec.module, policy, executor=executor, **params)
    seen = []
    with torch.no_grad():
        for i, x in enumerate(clip):
            if engine.executor is not None:
                engine.executor.pinned_seconds = (1.0, 1.0)
            out = engine(x)
            st = engine.stats()
            seen.append("engine" if st["dense_engine"] else "filled" if st["dense_engine_filled"] else
                        "refresh" if st["refresh"] else "sparse")
            if i == 0:  # the same frame computed by passrt: the same caches, the same outputs
                expected = own(x)
                for step in engine.plan.steps[1:]:
                    if step.name in engine.executor.env and hasattr(engine.executor.env[step.name], "nhwc"):
                        torch.testing.assert_close(engine.executor.env[step.name].nhwc(),
                                                   own.executor.env[step.name].nhwc(), rtol=0, atol=1e-4)
            elif i == 1:  # and a sparse frame after it
                expected = own(x)
                assert not st["refresh"] and st["active_fraction"] < 0.95
            else:
                expected = spec.module(x) if st["refresh"] else None
            for a, b in zip(expected or (), out):
                torch.testing.assert_close(b, a, rtol=0, atol=2e-4)
    assert seen == ["filled", "sparse", "filled", "engine", "engine", "filled", "filled"], seen
    assert dense.fills == 4 and engine.stats()["dense_engine_fills"] == 4


def test_the_first_fill_is_not_taken_for_what_catching_up_costs(ssdlite_frames):
    """The first filling frame also exports the engine's graph (seconds): its time is not recorded as the cost
    of a catch-up, which would hold off catching up for many frames; the next fill's is."""
    spec, frames = ssdlite_frames
    engine = passrt.sparsify(spec.module, "regiondrop", executor="reference", dense_engine=FillingDense(spec.module))
    with torch.no_grad():
        engine(frames[0])
        assert engine.stats()["dense_engine_filled"] and engine.executor.seconds["own"] is None
        engine(torch.flip(frames[0], dims=[2, 3]))  # an isolated cut: filled again
        assert engine.stats()["dense_engine_filled"] and engine.executor.seconds["own"] > 0


def test_a_dense_engine_that_cannot_fill_is_not_asked_again(ssdlite_frames):
    spec, frames = ssdlite_frames
    dense = FillingDense(spec.module, can_fill=False)
    engine = passrt.sparsify(spec.module, "regiondrop", executor="reference", dense_engine=dense)
    with torch.no_grad():
        for x in (frames[0], torch.flip(frames[0], dims=[2, 3]), frames[0]):
            out = engine(x)
            assert engine.stats()["refresh"] and not engine.stats()["dense_engine_filled"]
            for a, b in zip(spec.module(x), out):
                torch.testing.assert_close(b, a, rtol=0, atol=2e-4)
    assert dense.fills == 1 and engine.stats()["dense_engine_fills"] == 0


def test_the_frame_test_runs_on_one_thread_while_the_dense_engine_answers(ssdlite_frames):
    """While frames go to the dense engine (the caches stale) the policy's frame test runs on one thread (its
    OpenMP threads would otherwise spin on the cores ORT starts on); on other frames on every thread; the
    thread count is restored after each test."""
    spec, frames = ssdlite_frames
    cut = torch.flip(frames[0], dims=[2, 3])
    clip = [frames[0], frames[1], cut, frames[0], cut, cut, frames[2]]
    engine = passrt.sparsify(spec.module, "regiondrop", executor="reference", dense_engine=CountingDense(spec.module))
    threads_in_test = []
    begin_frame = engine.policy.begin_frame

    def recording(ctx, x, refresh):
        threads_in_test.append(torch.get_num_threads())
        return begin_frame(ctx, x, refresh)

    engine.policy.begin_frame = recording
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        with torch.no_grad():
            for x in clip:
                if engine.executor is not None:
                    engine.executor.pinned_seconds = (1.0, 1.0)
                engine(x)
                seen.append(engine.stats()["dense_engine"])
                assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    # the frames after one the engine answered (caches stale) are tested on one thread
    assert seen == [False, False, False, True, True, False, False]
    assert threads_in_test == [2, 2, 2, 2, 1, 1, 2], threads_in_test


def _answered_by(spec, clip, pinned) -> list:
    """Who answered each frame of ``clip`` (regiondrop, native, a counting dense engine; own and engine times
    pinned): "engine", "refresh" (passrt densely) or "sparse"."""
    engine = passrt.sparsify(spec.module, "regiondrop", executor="native", dense_engine=CountingDense(spec.module))
    seen = []
    with torch.no_grad():
        for x in clip:
            if engine.executor is not None:
                engine.executor.pinned_seconds = pinned
            engine(x)
            st = engine.stats()
            seen.append("engine" if st["dense_engine"] else "refresh" if st["refresh"] else "sparse")
    return seen


def test_the_engine_answers_calm_frames_until_catching_up_pays(ssdlite_frames):
    """After a run of engine frames the caches are stale; with passrt's dense frame 3x the engine's, a calm
    frame predicted to execute a share p of the dense work would save (1 - 3p) engine-frames over the
    engine, and catching up costs 2 more: the engine answers calm frames until those savings add up to 2."""
    _need_op()
    spec, frames = ssdlite_frames
    cut = torch.flip(frames[0], dims=[2, 3])
    clip = [frames[0], cut, frames[0], cut] + [frames[0]] * 8
    seen = _answered_by(spec, clip, pinned=(3.0, 1.0))
    # an isolated cut (passrt), then a run of changed frames (the engine from the second on); then calm frames
    # (nothing changes against the reference: predicted work 0) each save one engine frame, so the second
    # calm frame catches up, and the rest run sparse
    assert seen == ["refresh", "refresh", "engine", "engine", "engine", "engine", "refresh"] + ["sparse"] * 5, seen


def test_dense_above_is_validated(ssdlite_frames):
    spec, _ = ssdlite_frames
    with pytest.raises(PassrtError, match="dense_above must be in"):
        passrt.sparsify(spec.module, "regiondrop", dense_above=0)
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


def test_native_executor_runs_affine_pointwise_steps_bit_for_bit(ssdlite_frames):
    """SSDLite's input normalisation (x * 2 - 1, two pointwise steps) runs in the native affine kernel,
    and its caches equal the reference's bit for bit."""
    _need_op()
    spec, frames = ssdlite_frames
    reference = passrt.sparsify(spec.module, "regiondrop", executor="reference")
    native = passrt.sparsify(spec.module, "regiondrop", executor="native")
    for x in frames:
        reference(x), native(x)
        assert sorted(native.executor.affines) == ["mul", "sub"]
        for name in ("mul", "sub"):
            a, b = reference.executor.env[name], native.executor.env[name]
            assert torch.equal(a.rows[: a.cells], b.rows[: b.cells])


def test_native_runs_regiondrop_as_one_program_per_run_of_native_steps(ssdlite_frames):
    """regiondrop's tiles are known once the frame has begun: SSDLite's 57 native steps run in one call
    (its reshapes and concatenations after them), with the per-step path's outputs, tiles and stats."""
    _need_op()
    spec, frames = ssdlite_frames
    program = passrt.sparsify(spec.module, "regiondrop", executor="native")
    per_step = passrt.sparsify(spec.module, "regiondrop", executor="native")
    program(frames[0]), per_step(frames[0])
    per_step.executor.schedule = None  # the step-by-step loop of the reference executor
    runs = [item for item in program.executor.schedule if isinstance(item, tuple)]
    assert len(runs) == 1 and len(runs[0][1]) == 57
    for x in frames[1:]:
        for a, b in zip(per_step(x), program(x)):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
        s, p = per_step.stats(), program.stats()
        assert not p["refresh"] and p["active_fraction"] == s["active_fraction"] and p["layers"] == s["layers"]
        masks_s, masks_p = per_step.tile_masks(), program.tile_masks()
        assert masks_p.keys() == masks_s.keys()
        for label, m in masks_s.items():
            assert (m is None and masks_p[label] is None) or torch.equal(m, masks_p[label]), label


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=st.one_of(networks(), decoder_networks()), h=st.integers(12, 36), w=st.integers(12, 36),
       seed=st.integers(0, 1000), crossover=st.sampled_from([0.3, 1.0]))
def test_native_program_path_equals_the_reference_on_random_networks(net, h, w, seed, crossover):
    """Pooling, upsampling, concatenations, transposed convs and other steps the kernels do not run split
    the plan into several programs; every frame still equals the reference executor's."""
    _need_op()
    gen = torch.Generator().manual_seed(seed)
    params = dict(threshold=0.02, block=4, min_pixels=1, crossover=crossover, scene_cut=1.0)
    reference = passrt.sparsify(net, "regiondrop", executor="reference", **params)
    native = passrt.sparsify(net, "regiondrop", executor="native", **params)
    for t, frame in enumerate(change_sequence(h, w, 6, gen)):
        torch.testing.assert_close(native(frame), reference(frame), rtol=1e-4, atol=1e-4,
                                   msg=lambda m: f"frame {t}: {m}")
        assert native.stats()["active_fraction"] == pytest.approx(reference.stats()["active_fraction"])
    assert native.executor.schedule is not None


def test_dense_engine_answers_frames_predicted_to_spread_over_the_network(ssdlite_frames):
    """exact recomputes everything a change reaches through the receptive fields: a change over a third
    of the input executes most of the network. After one such sparse frame the executor has learned
    how far changes spread, and from the second frame predicted over dense_above on, the dense engine
    answers, although less than dense_above of the input changed."""
    _need_op()
    spec, frames = ssdlite_frames
    base = frames[0]
    h, w = base.shape[2:]
    blocks = torch.zeros(1, 1, h // 16, w // 16)
    blocks.view(-1)[::3] = 1  # every third 16x16 block
    where = torch.nn.functional.interpolate(blocks, size=(h, w)) > 0
    clip = [base] + [torch.where(where, base + 0.2 * k, base) for k in range(1, 5)]
    dense = CountingDense(spec.module)
    engine = passrt.sparsify(spec.module, "exact", threshold=0.05, executor="native", dense_engine=dense)
    seen = []
    with torch.no_grad():
        for x in clip:
            engine(x)
            st = engine.stats()
            seen.append(st["dense_engine"])
            assert st["input_active_fraction"] < engine.dense_above or st["refresh"]
    assert engine.executor.spread > 2  # measured: the changes spread
    assert seen == [False, False, False, True, True]
