"""The native executor's device path (engine/native_cuda.py): masks on the device, conv steps in
``passrt::conv_tiles`` with fixed-length tile-id lists, each frame a CUDA graph.

Its logic (mask source, steps the kernels do not run, state rotation, executed MACs, refreshes) runs
here on CPU with the CPU kernels and must equal the reference executor frame after frame. The CUDA
tests (marked ``cuda``: skipped without a GPU, failures under PASSRT_REQUIRE_GPU=1) check that
``auto`` picks it for CUDA tensors, that it equals the reference in fp32 and fp16, with CUDA graphs
on and off, and that the graph was really captured and replayed. :class:`FrameGraphs`' decisions
(when to capture, which graph to replay, what happens when capture fails) are tested with a
stand-in graph: nothing here pretends a GPU ran.
"""

import copy

import pytest
import torch

import passrt
from passrt.engine.graphs import FrameGraphs
from passrt.engine.native_cuda import DeviceNativeExecutor
from passrt.models import load_model
from passrt.policies import make_policy
from passrt.runtime.frames import read_frames
from tests.conftest import require_cuda_op, require_op

SIZE = (144, 192)


@pytest.fixture(scope="module")
def ssdlite_frames():
    spec = load_model("ssdlite-pedestrian")
    return spec, read_frames("vtest", 6, SIZE, preprocess=spec.preprocess).frames


def _plan(spec, frame):
    engine = passrt.sparsify(spec.module, "regiondrop", executor="reference")
    engine(frame)
    return engine.plan


@pytest.mark.parametrize("threshold", ["auto", 0.05])
def test_device_path_on_cpu_equals_the_reference(ssdlite_frames, threshold):
    """Same outputs, executed MACs, refreshes and tile masks as the reference, frame after frame."""
    require_op()
    spec, frames = ssdlite_frames
    device = DeviceNativeExecutor(_plan(spec, frames[0]), make_policy("regiondrop", threshold=threshold), "cpu",
                                  torch.float32)
    assert device.native_fraction() == 1.0 and len(device.affines) == 2  # every conv, and the input's x*2-1
    reference = passrt.sparsify(spec.module, "regiondrop", executor="reference", threshold=threshold)
    partial = 0
    for i, x in enumerate(frames):
        expected = reference(x)
        got, record = device.run(x, i == 0)
        for a, b in zip(expected, got):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-4)
        st = reference.stats()
        assert record.refresh == st["refresh"]
        assert record.macs_executed / record.macs_dense == pytest.approx(st["active_fraction"], abs=1e-5)
        masks, ref_masks = device.tile_masks(), reference.tile_masks()
        assert set(masks) == set(ref_masks)
        for label, m in masks.items():
            expected_mask = ref_masks[label]
            assert torch.equal(m, expected_mask if expected_mask is not None else torch.zeros_like(m)), label
        partial += 0 < st["active_fraction"] < 0.9
    assert partial >= 3, "the clip must exercise sparse frames"
    assert device.graphs.replays == 0  # no graphs on CPU


# ---- FrameGraphs: which graph runs when (a stand-in graph records captures and replays) ---------------

class StandInGraph:
    def __init__(self, log, body):
        self.log, self.body = log, body

    def replay(self):
        self.log.append(("replay", self.body.__name__))


def _graphs(log, warmup=1, fail=False, **kw):
    def capture(body):
        if fail:
            raise RuntimeError("operation not permitted when stream is capturing\nmore")
        log.append(("capture", body.__name__))
        return StandInGraph(log, body)

    return FrameGraphs(warmup, capture=capture, **kw)


def _body(log, name):
    def body():
        log.append(("eager", name))
    body.__name__ = name
    return body


def test_graphs_warm_up_capture_once_then_replay():
    log = []
    graphs = _graphs(log, warmup=2)
    body = _body(log, "frame")
    for _ in range(5):
        graphs(None, body)
    assert log == [("eager", "frame"), ("eager", "frame"), ("capture", "frame"), ("replay", "frame"),
                   ("replay", "frame"), ("replay", "frame")]
    assert graphs.replays == 3 and graphs.active


def test_two_alternating_address_sets_get_two_graphs():
    """A TensorRT engine's state buffers swap every frame: keys A, B, A, B ... each captured once."""
    log = []
    graphs = _graphs(log, warmup=1)
    a, b = _body(log, "a"), _body(log, "b")
    for i in range(6):
        graphs(("state", i % 2), a if i % 2 == 0 else b)
    assert log == [("eager", "a"), ("eager", "b"), ("capture", "a"), ("replay", "a"), ("capture", "b"),
                   ("replay", "b"), ("replay", "a"), ("replay", "b")]
    assert len(graphs.graphs) == 2


def test_a_failed_capture_warns_once_and_runs_eagerly():
    log = []
    graphs = _graphs(log, warmup=0, fail=True, what="test frame")
    body = _body(log, "frame")
    with pytest.warns(RuntimeWarning, match="CUDA graph capture of the test frame failed .RuntimeError: operation "
                                            "not permitted when stream is capturing.; running it without graphs"):
        graphs(None, body)
    graphs(None, body)
    assert log == [("eager", "frame"), ("eager", "frame")]  # the failed frame still ran, eagerly
    assert not graphs.active and graphs.failed.startswith("RuntimeError")


def test_graphs_off_always_run_eagerly_and_clear_forgets():
    log = []
    off = _graphs(log, warmup=0, enabled=False)
    off(None, _body(log, "x"))
    assert log == [("eager", "x")] and not off.graphs
    on = _graphs(log, warmup=0)
    on(None, _body(log, "y"))
    on.clear()
    on(None, _body(log, "y"))
    assert [e for e in log if e[0] == "capture"] == [("capture", "y"), ("capture", "y")]


# ---- on a GPU ---------------------------------------------------------------------------------------------

def _on_cuda(module, dtype=torch.float32):
    """The model where its frames are (the plan is traced on a frame, as `passrt bench --device cuda` does)."""
    return copy.deepcopy(module).to("cuda", dtype)


def _cuda_compare(spec, frames, dtype, graphs, atol):
    """The native executor on CUDA against the fp32 reference on the same input values (an fp16 frame's,
    rounded, for both: the masks, computed in fp32 on both sides, must then agree)."""
    reference = passrt.sparsify(spec.module, "regiondrop", executor="reference")
    native = passrt.sparsify(_on_cuda(spec.module, dtype), "regiondrop", cuda_graphs=graphs)  # auto
    partial = 0
    for x in frames:
        x = x.to(dtype).float()
        expected, got = reference(x), native(x.to("cuda", dtype))
        for a, b in zip(expected, got):
            torch.testing.assert_close(b.float().cpu(), a, rtol=0, atol=atol)
        st = reference.stats()
        assert native.stats()["active_fraction"] == pytest.approx(st["active_fraction"], abs=1e-3)
        assert native.stats()["refresh"] == st["refresh"]
        partial += 0 < st["active_fraction"] < 0.9
    assert partial >= 3
    assert native.stats()["executor"] == "native (NHWC tile kernels, CUDA)"
    return native.executor


@pytest.mark.cuda
@pytest.mark.parametrize("graphs", [True, False], ids=["graphs", "eager"])
def test_cuda_native_executor_equals_reference_fp32(ssdlite_frames, graphs):
    require_cuda_op()
    executor = _cuda_compare(*ssdlite_frames, torch.float32, graphs, 1e-3)
    assert isinstance(executor, DeviceNativeExecutor)
    assert executor.graphs.failed is None
    # 6 frames, 2 eager warm-up frames: the other 4 are replays of one captured graph.
    assert executor.graphs.replays == (len(ssdlite_frames[1]) - 2 if graphs else 0)


@pytest.mark.cuda
def test_cuda_native_executor_fp16_follows_the_reference(ssdlite_frames):
    """fp16 storage (tensor cores on sm_70+), fp32 accumulation, the same tile decisions as the fp32
    reference: its outputs are as close to fp32 as cuDNN's dense fp16 model is (within 4x its error on
    the first frame, measured here, not assumed)."""
    require_cuda_op()
    spec, frames = ssdlite_frames
    x = frames[0].to(torch.float16).float()
    with torch.no_grad():
        exact = spec.module(x)
        half = _on_cuda(spec.module, torch.float16)(x.to("cuda", torch.float16))
    dense_error = max(float((h.float().cpu() - e).abs().max()) for h, e in zip(half, exact))
    executor = _cuda_compare(spec, frames, torch.float16, True, 4 * dense_error + 1e-3)
    assert executor.graphs.failed is None and executor.graphs.replays > 0


@pytest.mark.cuda
def test_cuda_graph_replay_follows_new_frames_and_reset(ssdlite_frames):
    """The graph reads the frame and refresh flag from fixed buffers: a reset after replays is a dense frame."""
    require_cuda_op()
    spec, frames = ssdlite_frames
    native = passrt.sparsify(_on_cuda(spec.module), "regiondrop")
    for x in frames:
        native(x.cuda())
    native.reset()
    out = native(frames[2].cuda())
    assert native.stats()["refresh"] and native.executor.graphs.replays >= 4
    with torch.no_grad():
        dense = spec.module(frames[2])
    for a, b in zip(dense, out):
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=1e-3)


def test_cuda_tile_ids_have_a_fixed_length_and_mark_inactive_tiles():
    """On CUDA a step's tile list is every tile of its grid, -1 where inactive: its length never depends on
    the mask, so nothing waits for the device and a captured graph stays valid (conv_tiles skips -1 ids).
    The list is built with tensor ops, checked here on CPU tensors."""
    step = type("Step", (), {"grid": (2, 3)})()
    fake = type("Executor", (), {"cuda": True, "device": torch.device("cpu"), "_ids": {}})()
    mask = torch.tensor([[[[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]]]])
    ids = DeviceNativeExecutor._tile_ids(fake, step, mask)
    assert ids.tolist() == [0, -1, -1, -1, 4, 5]
    assert DeviceNativeExecutor._tile_ids(fake, step, torch.zeros_like(mask)).tolist() == [-1] * 6
