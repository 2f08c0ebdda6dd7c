"""The TensorRT backend: ``engine(x) -> outputs``, ``engine.stats()``, ``engine.reset()`` for a
``passrt build`` engine, like the backends in :mod:`passrt.runtime.backends`.

Dense engines take ``image`` and return the model's outputs. Sparse engines follow the ONNX
contract (:mod:`passrt.contract`): ``refresh`` is 1 on the first frame and after
:meth:`TensorRTBackend.reset`, and each ``state_out.<key>`` becomes the next frame's
``state.<key>`` by swapping the two buffers' addresses (no copy). Buffers are PyTorch CUDA
tensors; the frame goes up and the outputs come down through pinned host buffers on the
engine's own stream, timed with CUDA events. TensorRT 8.5+ and 10 run through tensor addresses
(``execute_async_v3``), TensorRT 8.0-8.4 through bindings (``execute_async_v2``).

The enqueue is replayed as a CUDA graph (TensorRT's developer guide, "CUDA Graphs": capture
``enqueueV3`` on the stream after one ordinary enqueue; a graph replays the addresses it was
captured with). The state buffers swap every frame, so there are two address sets and two graphs,
replayed alternately (:class:`~passrt.engine.graphs.FrameGraphs`, keyed by the bound addresses).
The upload, the refresh flag and the downloads stay outside the graph.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from passrt.errors import PassrtError
from passrt import contract
from passrt.runtime.tensorrt_build import (
    PLUGIN_ENV, build_engine, check_compatible, get_logger, gpu_info, import_tensorrt, load_plugin, read_sidecar,
    resolve_plugin, sha256_file, warn)

__all__ = ["TensorRTBackend", "build_engine", "check_compatible", "import_tensorrt", "load_plugin", "open_engine",
           "resolve_plugin"]  # the TensorRT entry points in one place

TORCH_DTYPES = {"FLOAT": "float32", "HALF": "float16", "BF16": "bfloat16", "INT8": "int8", "UINT8": "uint8",
                "INT32": "int32", "INT64": "int64", "BOOL": "bool"}


@dataclass
class TensorInfo:
    name: str
    is_input: bool
    shape: tuple
    dtype: str  # TensorRT DataType member name: FLOAT, HALF, ...
    storage: tuple = ()  # the buffer's shape: `shape` with a vectorized format's padding (HWC8: C up to 8)

    def __post_init__(self):
        self.storage = tuple(self.storage) or tuple(self.shape)


def _storage(shape, vectorized_dim, components) -> tuple:
    """The buffer a vectorized format needs: TensorRT's fp16 HWC8 stores C rounded up to 8 (a 12-channel
    cache of a plugin layer on the NHWC tile kernels takes 16 per cell), so a buffer of the logical shape
    would be too small. Linear formats: the shape itself."""
    shape = tuple(shape)
    if not isinstance(vectorized_dim, int) or not isinstance(components, int) or components <= 1 or \
            not 0 <= vectorized_dim < len(shape):
        return shape
    padded = list(shape)
    padded[vectorized_dim] = -(-shape[vectorized_dim] // components) * components
    return tuple(padded)


def io_tensors(trt, engine) -> list[TensorInfo]:
    """The engine's inputs and outputs in its own order (binding order for TensorRT 8)."""
    out = []
    if hasattr(engine, "num_io_tensors"):  # TensorRT 8.5+ and 10
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            shape = tuple(engine.get_tensor_shape(name))
            storage = _storage(shape, _call(engine, "get_tensor_vectorized_dim", name),
                               _call(engine, "get_tensor_components_per_element", name))
            out.append(TensorInfo(name, engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT, shape,
                                  _dtype_name(engine.get_tensor_dtype(name)), storage))
    else:  # TensorRT 8.0-8.4: bindings
        for i in range(engine.num_bindings):
            shape = tuple(engine.get_binding_shape(i))
            storage = _storage(shape, _call(engine, "get_binding_vectorized_dim", i),
                               _call(engine, "get_binding_components_per_element", i))
            out.append(TensorInfo(engine.get_binding_name(i), engine.binding_is_input(i), shape,
                                  _dtype_name(engine.get_binding_dtype(i)), storage))
    return out


def _call(engine, method: str, arg):
    """engine.method(arg), or None where this TensorRT (or a stand-in) lacks the method."""
    fn = getattr(engine, method, None)
    return fn(arg) if callable(fn) else None


def _dtype_name(dtype) -> str:
    return getattr(dtype, "name", str(dtype).rsplit(".", 1)[-1])


def torch_dtype(name: str):
    import torch

    if name not in TORCH_DTYPES:
        raise PassrtError(f"the engine has a {name} input or output, which passrt cannot feed "
                          "(fp32/fp16/bf16/int/bool only)")
    return getattr(torch, TORCH_DTYPES[name])


def plan_io(tensors: list[TensorInfo], onnx_outputs: list[str] | None = None,
            engine: str = "the engine") -> contract.GraphIO:
    """Which tensor is what under the ONNX contract; a one-line error for an engine that breaks it."""
    for t in tensors:
        if any(int(d) < 0 for d in t.shape):
            raise PassrtError(f"{engine}: {t.name} has a dynamic shape {t.shape}; passrt engines are built for one "
                              "frame size (passrt export --input-size HxW)")
    try:
        return contract.GraphIO({t.name: t.shape for t in tensors if t.is_input},
                                {t.name: t.shape for t in tensors if not t.is_input}, onnx_outputs)
    except ValueError as e:
        raise PassrtError(f"{engine}: {e}") from None


class TensorRTBackend:
    """A ``passrt build`` engine on the current CUDA device."""

    def __init__(self, path: str | os.PathLike, plugin: str | os.PathLike | None = None, label: str | None = None,
                 cuda_graphs: bool = True):
        path = Path(path)
        if not path.is_file():
            raise PassrtError(f"{path}: no such TensorRT engine file (build one on this machine with "
                              f"`passrt build MODEL.onnx -o {path}`)")
        self.path, self.label = path, label or path.name
        trt = import_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise PassrtError("TensorRT engines run on the GPU and this PyTorch has no CUDA (torch.cuda.is_available() "
                              "is False): install a CUDA build of PyTorch (on Jetson: NVIDIA's wheel for your JetPack)")
        self.sidecar = read_sidecar(path)
        self.plugin = self._load_plugin(plugin)
        if self.sidecar is not None:
            problem = check_compatible(self.sidecar, trt.__version__, *gpu_info(), engine=str(path))
            if problem:
                raise PassrtError(problem)
        self.device = torch.device("cuda", torch.cuda.current_device())
        self.runtime = trt.Runtime(get_logger(trt))  # kept: it must outlive the engine
        self.engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise PassrtError(f"TensorRT could not load {path} (its log above says why): most likely it was built "
                              "with another TensorRT version or for another GPU (rebuild it here with `passrt build`), "
                              "or it contains PassSparseConv2d layers and libpassrt_trt.so was not loaded (--plugin)")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise PassrtError(f"TensorRT could not create an execution context for {path} (out of GPU memory?)")
        self.tensors = {t.name: t for t in io_tensors(trt, self.engine)}
        onnx_outputs = [o["name"] for o in (self.sidecar or {}).get("outputs", [])]
        self.io = plan_io(list(self.tensors.values()), onnx_outputs, path.name)
        self.image_shape = self.tensors[self.io.image].shape
        self._v3 = hasattr(self.engine, "num_io_tensors") and hasattr(self.context, "execute_async_v3")

        self.buf = {n: torch.zeros(t.storage, dtype=torch_dtype(t.dtype), device=self.device)
                    for n, t in self.tensors.items()}
        fetch = self.io.outputs + ([self.io.active] if self.io.active else [])
        self.host = {n: torch.empty(self.buf[n].shape, dtype=self.buf[n].dtype, pin_memory=True)
                     for n in [self.io.image, *fetch]}
        self.fetch = fetch
        self.stream = torch.cuda.Stream(self.device)
        self.events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        self.order = list(self.tensors)  # binding order (TensorRT 8 execute_async_v2)
        self.bindings = [0] * len(self.order)
        for name in self.order:
            self._bind(name)
        torch.cuda.synchronize(self.device)  # the zero-filled buffers exist before our stream uses them
        self.loop = contract.StateLoop(self.io, {a: self.buf[a] for a, _ in self.io.states})
        from passrt.engine.graphs import FrameGraphs, capture_cuda_graph

        # One enqueue per address set before its capture (TensorRT applies deferred updates on the first).
        self.graphs = FrameGraphs(1, lambda body: capture_cuda_graph(body, self.stream), cuda_graphs,
                                  what=f"TensorRT enqueue of {self.label}")
        self.frames = 0
        self._stats = {"active_fraction": 1.0, "upload_ms": 0.0, "infer_ms": 0.0, "download_ms": 0.0}

    # -- what the engine is ----------------------------------------------------------------
    @property
    def metadata(self) -> dict:
        return (self.sidecar or {}).get("metadata") or {}

    @property
    def model_name(self) -> str | None:
        return self.metadata.get(contract.META_MODEL)

    @property
    def policy(self) -> dict:
        try:
            return json.loads(self.metadata.get(contract.META_POLICY, "{}"))
        except ValueError:
            return {}

    @property
    def sparse(self) -> bool:
        return self.io.sparse

    @property
    def input_hw(self) -> tuple[int, int]:
        return int(self.image_shape[-2]), int(self.image_shape[-1])

    def check_input(self, shape) -> None:
        shape = tuple(int(d) for d in shape)
        if shape == tuple(int(d) for d in self.image_shape):
            return
        h, w = self.input_hw
        got = f"{shape[-2]}x{shape[-1]}" if len(shape) == 4 else str(shape)
        raise PassrtError(f"{self.label} was built for {h}x{w} frames (HxW) and this input is {got}: export the model "
                          f"again with `passrt export --input-size {got} ...` and rebuild the engine")

    # -- running ---------------------------------------------------------------------------
    def _load_plugin(self, plugin):
        recorded = (self.sidecar or {}).get("plugin")
        if plugin is not None:
            return load_plugin(plugin)
        if recorded:
            here = recorded.get("path")
            use = None if os.environ.get(PLUGIN_ENV) or not here or not Path(here).is_file() else here
            try:
                lib = load_plugin(use)
            except PassrtError as e:
                raise PassrtError(f"{self.path.name} contains PassSparseConv2d layers and needs passrt's TensorRT "
                                  f"plugin: {e}") from None
            if recorded.get("sha256") and sha256_file(lib) != recorded["sha256"]:
                warn(f"{lib} is not the plugin library {self.path.name} was built with ({here}); if TensorRT "
                     "refuses the engine, rebuild it with this library")
            return lib
        if self.sidecar is None:  # unknown: load the plugin if it is built, harmless for dense engines
            try:
                return load_plugin(None)
            except PassrtError:
                return None
        return None

    def _bind(self, name: str) -> None:
        ptr = self.buf[name].data_ptr()
        if self._v3:
            self.context.set_tensor_address(name, ptr)
        else:
            self.bindings[self.order.index(name)] = ptr

    def __call__(self, x):
        import torch

        self.check_input(x.shape)
        s, ev = self.stream, self.events
        s.wait_stream(torch.cuda.current_stream(self.device))  # x may come from work on the current stream
        with torch.cuda.stream(s):
            ev[0].record(s)
            if x.is_cuda:
                self.buf[self.io.image].copy_(x, non_blocking=True)
            else:
                self.host[self.io.image].copy_(x)
                self.buf[self.io.image].copy_(self.host[self.io.image], non_blocking=True)
            if self.io.refresh:
                self.buf[self.io.refresh].fill_(self.loop.feeds(x, float)[self.io.refresh])
            ev[1].record(s)
            ok = [True]  # a replayed graph cannot fail here: its launch errors surface as CUDA errors

            def enqueue():
                ok[0] = (self.context.execute_async_v3(s.cuda_stream) if self._v3
                         else self.context.execute_async_v2(self.bindings, s.cuda_stream))

            self.graphs(self.addresses(), enqueue)
            ok = ok[0]
            ev[2].record(s)
            for name in self.fetch:
                self.host[name].copy_(self.buf[name], non_blocking=True)
            ev[3].record(s)
        s.synchronize()
        if not ok:
            raise PassrtError(f"TensorRT failed to run {self.label} (its log above says why)")
        results = {**{b: self.buf[b] for _, b in self.io.states}, **{n: self.host[n] for n in self.fetch}}
        outputs, retired = self.loop.advance(results)
        for a, b in self.io.states:  # this frame's state_out is the next frame's state: swap, no copy
            self.buf[a], self.buf[b] = self.loop.state[a], retired[b]
            self._bind(a)
            self._bind(b)
        self.frames += 1
        self._stats = {"active_fraction": self.loop.active_fraction if self.io.active else 1.0,
                       "upload_ms": ev[0].elapsed_time(ev[1]), "infer_ms": ev[1].elapsed_time(ev[2]),
                       "download_ms": ev[2].elapsed_time(ev[3])}
        return tuple(o.to(torch.float32, copy=True) if o.is_floating_point() else o.clone() for o in outputs)

    def addresses(self) -> tuple:
        """The bound buffers' addresses, in binding order: which CUDA graph replays this frame."""
        return tuple(self.buf[name].data_ptr() for name in self.order)

    def reset(self) -> None:
        """Forget the state: zeros and a full recompute on the next frame (in place: the graphs stay valid)."""
        import torch

        with torch.cuda.stream(self.stream):
            self.loop.reset(lambda t: t.zero_())
            for _, b in self.io.states:
                self.buf[b].zero_()
        self.stream.synchronize()

    def describe(self) -> dict:
        return {"backend": "tensorrt", "engine": {"path": str(self.path), "format": "sparse" if self.sparse else "dense",
                                                  "policy": self.policy, "fp16": (self.sidecar or {}).get("fp16")}}

    def stats(self) -> dict:
        side = self.sidecar or {}
        graphs = {"cuda_graphs": len(self.graphs.graphs), "graph_replays": self.graphs.replays,
                  **({"cuda_graph_error": self.graphs.failed} if self.graphs.failed else {})}
        return {"backend": "tensorrt", "engine": str(self.path), "format": "sparse" if self.sparse else "dense",
                "tensorrt": side.get("tensorrt"), "fp16": side.get("fp16"), "frames": self.frames, **self._stats,
                **graphs}


def open_engine(path, plugin=None, model: str | None = None, label: str | None = None,
                cuda_graphs: bool = True) -> TensorRTBackend:
    """A :class:`TensorRTBackend`; ``model``, when given, must be the one the engine was exported from."""
    engine = TensorRTBackend(path, plugin=plugin, label=label, cuda_graphs=cuda_graphs)
    if model and engine.model_name and model != engine.model_name:
        raise PassrtError(f"{engine.label} runs {engine.model_name}, not {model}: leave --model out, or export and "
                          f"build an engine for {model}")
    return engine


def tensorrt_machine() -> dict:
    """TensorRT's version and the GPU, for benchmark records."""
    trt = import_tensorrt()
    name, cc = gpu_info()
    return {"tensorrt": trt.__version__, "gpu": name, "compute_capability": f"sm_{cc[0]}{cc[1]}" if cc else None}
