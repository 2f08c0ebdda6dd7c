"""Backends: everything that turns a preprocessed frame into model outputs, behind one protocol.

    backend = open_backend("torch:regiondrop:threshold=0.1", model)   # passrt's sparse engine
    outputs = backend(x); backend.stats(); backend.reset(); backend.describe()

Specs:
- ``torch:dense`` (or ``dense``): the model itself in PyTorch, the baseline speed-ups are quoted against;
- ``torch:POLICY[:PARAMS]`` (or a bare policy spec): the model under :func:`passrt.sparsify`;
- ``ort``: the dense model exported to ONNX and run by ONNX Runtime on the CPU, all graph
  optimisations on, the dense engine a CPU user would otherwise pick;
- ``trt:ENGINE``: a TensorRT engine file from ``passrt build`` (:mod:`passrt.runtime.tensorrt_backend`).

``pipeline`` and ``bench`` use only the protocol; ``tile_masks()`` is optional (sparse engines).
"""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from passrt import assets
from passrt.errors import PassrtError


class Backend(Protocol):
    label: str

    def __call__(self, x: torch.Tensor): ...

    def stats(self) -> dict:
        """Figures of the last frame: at least ``active_fraction``; ``*_ms`` keys are stage timings."""

    def reset(self) -> None:
        """Forget all state: the next frame is computed in full."""

    def describe(self) -> dict:
        """What this backend is, for result records (policy, engine file, ...)."""


class TorchDense:
    """The dense baseline, in channels-last layout: PyTorch's faster CPU layout for these
    models (oneDNN; 1.5x faster than NCHW on SSDLite at 768x576), so speed-ups are not
    inflated by a slow baseline."""

    # Several streams' frames in one forward only when asked (--batch-streams): on the CPU measured, one
    # 768x576 frame already keeps the cores busy and batching did not pay (benchmarks/RESULTS.md).
    batch_by_default = False

    def __init__(self, module: nn.Module, label: str = "dense"):
        self.label = label
        self.module = copy.deepcopy(module).eval().to(memory_format=torch.channels_last)
        self._vmapped = None  # batch(): the module under torch.func.vmap, made on first use

    def __call__(self, x):
        with torch.inference_mode():
            return self.module(x.contiguous(memory_format=torch.channels_last))

    def new_stream(self) -> "TorchDense":
        return self  # no state from frame to frame: every stream can share it

    def batch(self, xs: list[torch.Tensor]) -> list:
        """Several streams' frames (each (1, C, H, W), one shape) in one forward; each frame's outputs as
        ``self(x)`` gives them (to float rounding: a batched convolution may sum in another order).
        Batched with ``torch.func.vmap``, so a model written for one frame (ours reshape their heads to
        batch 1) runs batched unchanged."""
        if self._vmapped is None:
            self._vmapped = torch.func.vmap(self.module)
        with torch.inference_mode():
            outs = self._vmapped(torch.stack(xs))  # (N, 1, C, H, W): each call of the module sees (1, C, H, W)
        return [_select(outs, i) for i in range(len(xs))]

    def batcher(self, streams: list):
        """How ``streams`` (this backend's new_stream()s, one per input) run their frames together: a callable
        (frames, the streams' positions) -> outputs. The dense model holds no state: one forward for all."""
        return lambda xs, _: self.batch(xs)

    def unbatched(self, stream) -> str | None:
        return None  # every frame of a size goes into one forward

    def stats(self) -> dict:
        return {"active_fraction": 1.0}

    def reset(self) -> None:
        pass

    def describe(self) -> dict:
        return {"backend": "torch", "policy": {"name": "dense"}}


class TorchSparse:
    """passrt's sparse engine (:class:`passrt.SparseModel`) under one policy.

    ``dense_engine="ort"``: frames that must be dense (the first, scene cuts, a moving camera) are
    answered by ONNX Runtime, the faster dense engine on CPU (see
    :class:`~passrt.engine.reference.ReferenceExecutor`); ``None``: passrt computes them itself."""

    # Streams of one size run their sparse steps together only when asked (--batch-streams): on an idle 2-core
    # CPU it measured 1.04-1.05x, under the 1.05x that counts as faster (benchmarks/multistream.py, RESULTS.md
    # "Several streams"); outputs equal to each stream alone either way.
    batch_by_default = False
    _batch = None  # the StreamBatch of batcher()

    def __init__(self, module: nn.Module, policy, label: str, dense_engine: str | None = None,
                 model_name: str = "model", executor: str = "auto", onnx_file=None, cuda_graphs: bool = True):
        from passrt.engine import SparseModel

        self.label, self.spec = label, policy
        self.model = SparseModel(module, policy.build(), executor=executor, cuda_graphs=cuda_graphs)
        if dense_engine == "ort":  # the module the engine runs (fine-tuned weights included), or the user's file
            self.model.dense_engine = DenseOnnxRuntime(self.model.model, model_name, onnx_file)
        elif dense_engine is not None:
            raise PassrtError(f"unknown dense engine '{dense_engine}'; choose ort or none")

    def new_stream(self) -> "TorchSparse":
        """The same engine for another stream: shared weights and plans, its own caches and policy state."""
        other = object.__new__(TorchSparse)
        other.label, other.spec = self.label, self.spec
        other.model = self.model.new_stream(self.spec.build())
        return other

    def __call__(self, x):
        return self.model(x)

    def batcher(self, streams: list):
        """How ``streams`` (this backend's new_stream()s, itself included, one per input) run their frames
        together: a callable (frames, the streams' positions) -> outputs. Streams of one size share each
        step's kernel call over the union of their active tiles, keeping their own caches, masks and refreshes
        (:class:`passrt.engine.batched.StreamBatch`); ``unbatched(stream)`` says why a stream ran alone."""
        from passrt.engine.batched import StreamBatch

        models = [s.model for s in streams]
        self._batch = StreamBatch(models)
        return lambda xs, positions: self._batch.run([models[i] for i in positions], xs)

    def unbatched(self, stream) -> str | None:
        """None when ``stream``'s frames ran batched with other streams', else why not."""
        return self._batch.unbatched(stream.model) if self._batch is not None else "--batch-streams is off"

    def stats(self) -> dict:
        return self.model.stats()

    def refresh(self) -> None:
        """The next frame runs dense (the run-time guard's correction)."""
        self.model.refresh()

    def reset(self) -> None:
        self.model.reset()

    def describe(self) -> dict:
        stats = self.model.stats()
        return {"backend": "torch", "policy": self.model.policy.describe(), "refreshes": stats["refreshes"],
                "executor": stats["executor"], "dense_engine": "onnxruntime" if self.model.dense_engine else None,
                "dense_engine_frames": stats["dense_engine_frames"], "dense_engine_fills": stats["dense_engine_fills"]}

    def tile_masks(self) -> dict:
        return self.model.tile_masks()


class OnnxRuntimeDense:
    """The dense model exported once per input size (cached) and run by ONNX Runtime."""

    def __init__(self, module: nn.Module, example: torch.Tensor, model_name: str, threads: int | None = None,
                 label: str = "onnxruntime", between_runs: bool = False):
        self.label = label
        self.session = _session(_export_cached(module, example, model_name), threads or torch.get_num_threads(),
                                between_runs)
        self.input_name = self.session.get_inputs()[0].name
        self.shape = tuple(example.shape)

    def __call__(self, x):
        if tuple(x.shape) != self.shape:
            raise PassrtError(f"the ONNX model was exported for input {self.shape}, got {tuple(x.shape)}")
        outs = self.session.run(None, {self.input_name: x.numpy()})
        return tuple(torch.from_numpy(o) for o in outs)

    def stats(self) -> dict:
        return {"active_fraction": 1.0}

    def reset(self) -> None:
        pass

    def describe(self) -> dict:
        import onnxruntime

        return {"backend": "onnxruntime", "onnxruntime": onnxruntime.__version__, "policy": {"name": "dense"}}


class DenseOnnxRuntime:
    """ONNX Runtime as a sparse engine's dense engine: the user's ONNX file as it is, or the module
    exported on the first frame of each size. Returns None (and passrt computes dense frames itself
    from then on) when the model cannot be exported or loaded, after one warning line."""

    def __init__(self, module: nn.Module, model_name: str, onnx_file=None):
        self.module, self.model_name, self.onnx_file = module, model_name, onnx_file
        self.sessions: dict[tuple, OnnxRuntimeDense] = {}  # per input size (streams may differ)
        self.fill_sessions: dict[tuple, object] = {}  # per input size: the graph that also returns the caches
        self.failed = self.fill_failed = False

    def __call__(self, x: torch.Tensor):
        shape = tuple(x.shape)
        if shape not in self.sessions and not self.failed:
            try:
                self.sessions[shape] = (OnnxRuntimeFile(self.onnx_file, between_runs=True) if self.onnx_file is not None
                                        else OnnxRuntimeDense(self.module, x, self.model_name, between_runs=True))
            except Exception as e:  # any export or load failure: passrt's own dense path still works
                self.failed = True
                self._warn("run", e)
        return None if self.failed else self.sessions[shape](x)

    def fill(self, x: torch.Tensor, values: nn.Module, buffers: list[torch.Tensor]) -> bool:
        """Run ``values`` (the model returning the values a sparse engine caches, passrt/plan/values.py) on
        ``x`` with ONNX Runtime, each output written straight into its buffer (bound by address: no copy).
        False, after one warning line, when that graph cannot be exported or run: passrt then computes its
        dense frames itself."""
        if self.fill_failed or any(b.dtype != torch.float32 or not b.is_contiguous() for b in buffers):
            return False
        key = (tuple(x.shape), len(buffers))
        try:
            if key not in self.fill_sessions:
                path = _export_cached(values, x, self.model_name, kind="values")
                self.fill_sessions[key] = _session(path, torch.get_num_threads(), between_runs=True)
            session = self.fill_sessions[key]
            binding = session.io_binding()
            binding.bind_cpu_input(session.get_inputs()[0].name, x.numpy())
            for out, buffer in zip(session.get_outputs(), buffers):
                binding.bind_output(out.name, "cpu", 0, np.float32, tuple(buffer.shape), buffer.data_ptr())
            session.run_with_iobinding(binding)
            return True
        except Exception as e:  # as in __call__: passrt's own dense path still works
            self.fill_failed = True
            self._warn("fill the caches of", e)
            return False

    def _warn(self, what: str, e: Exception) -> None:
        import sys

        print(f"passrt: warning: ONNX Runtime cannot {what} {self.model_name} ({type(e).__name__}: "
              f"{str(e).splitlines()[0] if str(e) else ''}); passrt computes its dense frames itself", file=sys.stderr)


class OnnxRuntimeFile(OnnxRuntimeDense):
    """A user's own ONNX file run by ONNX Runtime as it is: the dense baseline of an imported model
    (its input layout as the file takes it; passrt's module takes NCHW)."""

    def __init__(self, info, threads: int | None = None, label: str = "onnxruntime", between_runs: bool = False):
        self.label, self.info = label, info
        self.session = _session(info.path, threads or torch.get_num_threads(), between_runs)
        self.input_name = info.input_name

    def __call__(self, x):
        x = x.permute(0, 2, 3, 1) if self.info.input_layout == "nhwc" else x
        outs = self.session.run(None, {self.input_name: np.ascontiguousarray(x.numpy())})
        return tuple(torch.from_numpy(o) for o in outs)


def _select(outputs, i: int):
    """Frame ``i`` of batched outputs: a tensor, or a tuple/list of them (nested)."""
    if isinstance(outputs, torch.Tensor):
        return outputs[i]
    return type(outputs)(_select(o, i) for o in outputs)


def open_backend(spec, model=None, example: torch.Tensor | None = None, common: dict | None = None,
                 plugin: str | None = None, label: str | None = None, dense_engine: str | None = "ort",
                 executor: str = "auto", cuda_graphs: bool = True) -> Backend:
    """The backend for ``spec``: a string (see the module docstring) or a :class:`~passrt.policies.PolicySpec`.

    ``model``: the :class:`~passrt.models.ModelSpec` (its module runs under torch/ort; for trt it
    must be the model the engine was exported from, if given). ``example``: a frame, needed by
    ``ort`` (the export's input size). ``common``: parameters applied to every policy that takes
    them (``--threshold``, ``--gates``). ``plugin``: the TensorRT plugin library for ``trt``.
    ``dense_engine``: what answers a sparse engine's dense frames on CPU ('ort', or None: passrt itself).
    ``executor``: the sparse engine's executor (:func:`passrt.sparsify`). ``cuda_graphs``: frames replayed as
    CUDA graphs (the native executor on CUDA, TensorRT engines); False launches every kernel/enqueue eagerly.
    """
    from passrt.policies import PolicySpec

    if isinstance(spec, PolicySpec):
        kind, rest, policy = "torch", spec.label, spec
    else:
        kind, _, rest = spec.partition(":")
        policy = None
    if kind == "trt":
        from passrt.runtime.tensorrt_backend import open_engine

        if not rest:
            raise PassrtError("trt: needs an engine file, e.g. trt:model.engine")
        return open_engine(rest, plugin, model.name if model is not None else None, label=label,
                           cuda_graphs=cuda_graphs)
    if model is None:
        raise PassrtError(f"backend '{spec}' needs a model")
    if kind == "ort":
        if example is None:
            raise PassrtError("backend 'ort' needs an example frame (the exported graph's input size)")
        if getattr(model, "onnx", None) is not None:
            return OnnxRuntimeFile(model.onnx, label=label or "onnxruntime")
        return OnnxRuntimeDense(model.module, example, model.name, label=label or "onnxruntime")
    if policy is None:
        policy = PolicySpec.parse(rest if kind == "torch" else spec, common)
    if policy.name == "dense":
        return TorchDense(model.module, label or policy.label)
    weight = next(model.module.parameters(), None)
    on_cpu = weight is None or weight.device.type == "cpu"
    return TorchSparse(model.module, policy, label or policy.label, dense_engine if on_cpu else None, model.name,
                       executor, getattr(model, "onnx", None), cuda_graphs)


def open_stages(spec, policy: str = "regiondrop", dense_engine: str | None = "ort"):
    """``spec`` with the model its preprocess runs (a pose model's person detector,
    :class:`~passrt.models.blazepose.PersonCrop`) under passrt's sparse engine (``policy``), so that
    stage too recomputes only what changed, with the same ``dense_engine`` as a model run on its own
    (its wide-change frames answered by ONNX Runtime). Models without one are returned unchanged."""
    stage = getattr(spec.preprocess, "detector", None)
    if stage is not None:
        spec.preprocess.engine = open_backend(policy, stage, dense_engine=dense_engine)
    return spec


def open_with_model(spec, model: str | None, default_model: str, plugin: str | None = None,
                    dense_engine: str | None = "ort"):
    """(backend, its :class:`~passrt.models.ModelSpec`) for ``spec``: the named model (default
    ``default_model``), or for a TensorRT engine the model it was exported from (its sidecar says)."""
    from passrt.models import load_model

    if isinstance(spec, str) and spec.startswith("trt:"):
        backend = open_backend(spec, load_model(model) if model else None, plugin=plugin)
        if not (backend.model_name or model):
            from passrt.runtime.tensorrt_build import warn

            warn(f"{backend.label}: no model name in its sidecar; assuming {default_model} (--model sets it)")
        return backend, open_stages(load_model(backend.model_name or model or default_model), dense_engine=dense_engine)
    spec_model = open_stages(load_model(model or default_model), dense_engine=dense_engine)
    return open_backend(spec, spec_model, plugin=plugin, dense_engine=dense_engine), spec_model


def policy_name(backend) -> str:
    """The policy a backend runs, for status lines ('regiondrop', 'regiondrop (TensorRT)')."""
    described = backend.describe()
    if "engine" in described:  # a TensorRT engine: the policy it was exported with
        return f"{described['engine']['policy'].get('name', backend.label)} (TensorRT)"
    return described["policy"]["name"]


def _session(path, threads: int, between_runs: bool = False):
    """An ONNX Runtime CPU session with every graph optimisation on: the dense engine a CPU user would pick.

    ``between_runs``: other work runs between this session's runs (a sparse engine's frame test, its own
    frames), so its threads stop spinning when a run ends instead of holding the cores that work needs
    (ORT's threads spin-wait for the next run by default: faster for back-to-back runs, but on 2 cores the
    sparse engine's frames answered by ORT then ran 7 % slower than ORT alone on bigbuckbunny 1280x720 and
    2.8x slower on carphone 176x144; with the threads stopped, level and 1.9x, benchmarks/RESULTS.md)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if between_runs:
        opts.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _export_cached(module: nn.Module, example: torch.Tensor, model_name: str, kind: str = "") -> Path:
    """Export to ``<cache>/onnx/<model>[-<kind>]-<HxW>-<hash>.onnx`` unless it is there already (the hash: of
    the weights, and for a ``kind`` of graph also of its code, e.g. which values it returns)."""
    from passrt.export.onnx_export import export_dense

    digest = hashlib.sha256()
    for t in module.state_dict().values():
        digest.update(t.detach().cpu().numpy().tobytes()[:4096])
    if kind:
        digest.update(str(getattr(module, "code", "")).encode())
    h, w = example.shape[2:]
    stem = re.sub(r"[^\w.-]", "_", Path(model_name).name)  # a model given as a path (x.cfg): its file name
    stem = f"{stem}-{kind}" if kind else stem
    path = assets.cache_dir() / "onnx" / f"{stem}-{h}x{w}-{digest.hexdigest()[:12]}.onnx"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    export_dense(module, example, path)
    return path
