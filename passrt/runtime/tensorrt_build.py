"""TensorRT without a hard dependency: import it, load passrt's plugin, build engines, check sidecars.

Everything here is written against TensorRT's documented Python API for 8.0-8.6 (JetPack 4.6, 5,
6.0) and 10.x (JetPack 6.1+) and picks between them by feature, never by version string. Without
TensorRT every entry point fails with one :class:`PassrtError` line saying how to get it.

An engine ``X.engine`` comes with a sidecar ``X.engine.json`` (:func:`build_engine` writes it):
TensorRT version, GPU and compute capability, the plugin and its sha256, precision, the ONNX
file's passrt metadata and the engine's I/O. Engines only run on the TensorRT version and GPU
they were built for; :func:`check_compatible` turns a mismatch into a message before TensorRT
fails with a less helpful one.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

from passrt.assets import sha256_file
from passrt.errors import PassrtError
from passrt import contract

PLUGIN_ENV = "PASSRT_TRT_PLUGIN"
PLUGIN_RELPATH = Path("plugins") / "tensorrt" / "build" / "libpassrt_trt.so"
BUILD_PLUGIN_HINT = ("build it with `cmake -S plugins/tensorrt -B plugins/tensorrt/build && "
                     "cmake --build plugins/tensorrt/build` (plugins/tensorrt/README.md)")
LEGACY_WORKSPACE_MB = 256  # TensorRT < 8.4 defaults to no workspace at all, which rules out many tactics

_LOADED: dict[str, ctypes.CDLL] = {}
_LOGGER = None


def one_line(e: BaseException | str) -> str:
    return " ".join(str(e).split())


def warn(message: str) -> None:
    print(f"passrt: warning: {message}", file=sys.stderr, flush=True)


def import_tensorrt():
    """``import tensorrt``, or one line saying how to get it."""
    try:
        import tensorrt as trt
    except ModuleNotFoundError as e:
        if e.name not in ("tensorrt", None):  # the package is there, one of its parts is not
            raise PassrtError(f"TensorRT's Python package is installed but does not import: {one_line(e)}") from None
        raise PassrtError("TensorRT is not installed (`import tensorrt` fails): JetPack ships it (apt package "
                          "python3-libnvinfer; make a venv with --system-site-packages to see it); on x86 use NVIDIA's "
                          "NGC TensorRT/PyTorch container or `pip install tensorrt` on a machine with an NVIDIA GPU"
                          ) from None
    except (ImportError, OSError) as e:  # e.g. libnvinfer.so missing or for another CUDA
        raise PassrtError(f"TensorRT's Python package is installed but does not load: {one_line(e)}") from None
    return trt


def get_logger(trt):
    """One logger per process (TensorRT warns when builders and runtimes get different ones)."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def default_plugin_paths() -> list[Path]:
    """Where the plugin's CMake build puts the library: under the current directory, and under the
    source checkout passrt runs from, if it runs from one (an installed wheel has no plugins/)."""
    roots = [Path.cwd()]
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "plugins" / "tensorrt" / "CMakeLists.txt").is_file():
        roots.insert(0, checkout)
    return list(dict.fromkeys((root / PLUGIN_RELPATH).resolve() for root in roots))


def resolve_plugin(path: str | os.PathLike | None = None) -> Path:
    """``path``, else ``$PASSRT_TRT_PLUGIN``, else the default build location; the file must exist."""
    if path is None and os.environ.get(PLUGIN_ENV):
        path, source = os.environ[PLUGIN_ENV], f"${PLUGIN_ENV}"
    elif path is not None:
        source = "--plugin"
    else:
        candidates = default_plugin_paths()
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            raise PassrtError(f"the TensorRT plugin library is not built (looked for {candidates[0]}): "
                              f"{BUILD_PLUGIN_HINT}, or pass --plugin PATH")
        return found
    p = Path(path).expanduser()
    if not p.is_file():
        raise PassrtError(f"{p}: no such TensorRT plugin library ({source}); {BUILD_PLUGIN_HINT}")
    return p.resolve()


def load_plugin(path: str | os.PathLike | None = None) -> Path:
    """Load libpassrt_trt.so (after ``import tensorrt``, so that it binds to this process's libnvinfer
    and registers PassSparseConv2d in its registry); once per process. Returns its path."""
    lib = resolve_plugin(path)
    if str(lib) in _LOADED:
        return lib
    import_tensorrt()
    if _LOADED:
        warn(f"{lib}: another plugin library ({next(iter(_LOADED))}) is already loaded; the first registration wins")
    try:
        _LOADED[str(lib)] = ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
    except OSError as e:
        raise PassrtError(f"cannot load the TensorRT plugin {lib}: {one_line(e)} (built for another architecture or "
                          f"TensorRT major version, or libnvinfer/libcudart are not on the library path); rebuild it "
                          f"on this machine: {BUILD_PLUGIN_HINT}") from None
    return lib


def gpu_info() -> tuple[str | None, tuple[int, int] | None]:
    """(name, (major, minor)) of the current CUDA device: from PyTorch, else the CUDA driver; (None, None)."""
    try:
        import torch

        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(torch.cuda.current_device())
            return props.name, (props.major, props.minor)
    except Exception:  # noqa: BLE001 - best effort: a CPU-only PyTorch (common on Jetson) is fine
        pass
    try:  # the driver API is stable across CUDA versions: cuInit, cuDeviceGet, cuDeviceGetName, cuDeviceGetAttribute
        cuda = ctypes.CDLL("libcuda.so.1")
        dev, major, minor, name = ctypes.c_int(), ctypes.c_int(), ctypes.c_int(), ctypes.create_string_buffer(256)
        if (cuda.cuInit(0) or cuda.cuDeviceGet(ctypes.byref(dev), 0) or cuda.cuDeviceGetName(name, 256, dev)
                or cuda.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # COMPUTE_CAPABILITY_MAJOR
                or cuda.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)):  # COMPUTE_CAPABILITY_MINOR
            return None, None
        return name.value.decode(errors="replace"), (major.value, minor.value)
    except (OSError, AttributeError):
        return None, None


# ---------------------------------------------------------------------------------------------
# Sidecars and compatibility

def sidecar_path(engine: str | os.PathLike) -> Path:
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def read_sidecar(engine: str | os.PathLike) -> dict | None:
    """The engine's sidecar, or None (with a warning) when it is missing or unreadable."""
    path = sidecar_path(engine)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        warn(f"{path.name} not found next to the engine: cannot check that it matches this TensorRT and GPU, "
             "nor which model and plugin it needs (`passrt build` writes it)")
    except (OSError, ValueError) as e:
        warn(f"{path}: unreadable sidecar ({one_line(e)}); going on without it")
    return None


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", str(version).split("+")[0])[:3])


def _sm(capability) -> str:
    return f"sm_{capability[0]}{capability[1]}" if capability else "unknown compute capability"


def rebuild_command(sidecar: dict, engine: str | None = None) -> str:
    plugin = (sidecar.get("plugin") or {}).get("path")
    parts = ["passrt build", sidecar.get("onnx") or "MODEL.onnx", f"--plugin {plugin}" if plugin else "",
             "--fp16" if sidecar.get("fp16") else "", f"-o {engine or sidecar.get('engine') or 'MODEL.engine'}"]
    return " ".join(p for p in parts if p)


def check_compatible(sidecar: dict, trt_version: str, gpu_name: str | None, capability: tuple | None,
                     engine: str | None = None) -> str | None:
    """None if an engine described by ``sidecar`` can run here, else one line saying what to do.

    TensorRT engines are tied to the TensorRT release (compared to major.minor.patch) and the GPU's
    compute capability; another GPU model of the same capability works (TensorRT warns)."""
    built_trt, built_cc = sidecar.get("tensorrt"), sidecar.get("compute_capability")
    same_trt = not built_trt or _version_key(built_trt) == _version_key(trt_version)
    same_gpu = not built_cc or not capability or tuple(built_cc) == tuple(capability)
    if same_trt and same_gpu:
        return None
    name = engine or sidecar.get("engine") or "the engine"
    return (f"{name} was built with TensorRT {built_trt or '?'} for {sidecar.get('gpu') or '?'} ({_sm(built_cc)}); "
            f"this machine has TensorRT {trt_version} and {gpu_name or 'an unknown GPU'} ({_sm(capability)}): "
            f"rebuild it with `{rebuild_command(sidecar, engine)}`")


# ---------------------------------------------------------------------------------------------
# Building

def _read_onnx(path: Path):
    import onnx

    if not path.is_file():
        raise PassrtError(f"{path}: no such ONNX file (write one with `passrt export ... -o {path}`)")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise PassrtError(f"{path}: not a readable ONNX file ({one_line(e)})") from None


def network_flags(trt, builder) -> int:
    """Explicit batch: required in TensorRT 8 (which still builds implicit-batch networks, hence its
    ``Builder.max_batch_size``); TensorRT 10 networks are always explicit batch."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", None)
    return 1 << int(flag) if flag is not None and hasattr(builder, "max_batch_size") else 0


def parser_errors(parser) -> str:
    """The parser's errors in one line: 'node 12 'name' (Op): description; ...'."""
    out = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        try:
            node_name = e.node_name() if hasattr(e, "node_name") else ""  # TensorRT 10 only
            node_op = e.node_operator() if hasattr(e, "node_operator") else ""
            where = f"node {e.node()}" + (f" '{node_name}'" if node_name else "") + (f" ({node_op})" if node_op else "")
            out.append(f"{where}: {one_line(e.desc())}" if e.node() >= 0 else one_line(e.desc()))
        except Exception:  # noqa: BLE001 - fall back on the error's own text
            out.append(one_line(e))
    return "; ".join(out) or "no details (see TensorRT's log above)"


def set_workspace(trt, config, workspace_mb: int | None) -> None:
    if hasattr(config, "set_memory_pool_limit"):  # TensorRT >= 8.4 (default: all device memory)
        if workspace_mb is not None:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    else:
        config.max_workspace_size = int(workspace_mb or LEGACY_WORKSPACE_MB) << 20


def enable_aliased_state(trt, config) -> bool:
    """TensorRT >= 10.3: turn on aliased plugin I/O (a preview feature), so that PassSparseConv2d, which
    asks for it (getAliasedInput), updates its cache in place instead of copying the whole cache every
    frame. False where TensorRT has no such feature (the plugin then copies; correct, only slower)."""
    feature = getattr(getattr(trt, "PreviewFeature", None), "ALIASED_PLUGIN_IO_10_03", None)
    if feature is None or not hasattr(config, "set_preview_feature"):
        return False
    config.set_preview_feature(feature, True)
    return True


def channel_last_state(trt, network, model, fp16: bool) -> list[str]:
    """Give the caches of PassSparseConv2d layers the format the NHWC tile kernels read (every conv runs on
    them in the plugin: groups 1, depthwise, grouped), as engine I/O: fp32 ``HWC``; with fp16 ``HALF`` and
    ``HWC8`` (C rounded up to 8 per cell: the kernels read padded rows, and the runner allocates the padded
    size, tensorrt_backend.TensorInfo.storage). Otherwise state I/O is fp32 linear and TensorRT converts
    every cache on the way in and out of each plugin, every frame. The caches are opaque to passrt's runner
    (zeros, then fed back), so their layout is TensorRT's business. Returns the names of the tensors
    changed."""
    caches = set()
    for node in model.graph.node:
        if node.op_type == contract.PLUGIN_NAME and len(node.input) >= 3:
            caches.update([node.input[2], node.output[0]])
    fmt = trt.TensorFormat.HWC8 if fp16 else trt.TensorFormat.HWC
    changed = []
    for tensor in [network.get_input(i) for i in range(network.num_inputs)] + \
                  [network.get_output(i) for i in range(network.num_outputs)]:
        if tensor.name not in caches or len(tensor.shape) != 4:
            continue
        if fp16:
            tensor.dtype = trt.DataType.HALF
        tensor.allowed_formats = 1 << int(fmt)
        changed.append(tensor.name)
    return changed


def progress_monitor(trt):
    """TensorRT 10's build progress as tqdm bars on a terminal; None where unavailable."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    class Monitor(base):
        def __init__(self):
            base.__init__(self)
            self.bars, self.lock = {}, threading.Lock()  # TensorRT may call from several threads

        def phase_start(self, phase_name, parent_phase, num_steps):
            with self.lock:
                try:
                    self.bars[phase_name] = tqdm(total=num_steps, desc=phase_name, leave=False, file=sys.stderr,
                                                 position=len(self.bars), unit="step")
                except Exception:  # noqa: BLE001 - progress must never break the build
                    pass

        def step_complete(self, phase_name, step):
            with self.lock:
                bar = self.bars.get(phase_name)
                if bar is not None:
                    bar.n = step + 1
                    bar.refresh()
            return True  # False would cancel the build

        def phase_finish(self, phase_name):
            with self.lock:
                bar = self.bars.pop(phase_name, None)
                if bar is not None:
                    bar.close()

    return Monitor()


def _write_atomic(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    tmp.replace(path)


def build_engine(onnx_path: str | os.PathLike, out_path: str | os.PathLike | None = None,
                 plugin: str | os.PathLike | None = None, fp16: bool = False, workspace_mb: int | None = None,
                 progress: bool = True) -> dict:
    """Build ``onnx_path`` into a TensorRT engine at ``out_path`` (default: the .onnx path with an
    .engine suffix) plus its sidecar; returns the sidecar. Messages go to stderr."""
    onnx_path = Path(onnx_path)
    out = Path(out_path) if out_path else onnx_path.with_suffix(".engine")
    model = _read_onnx(onnx_path)
    if not out.parent.is_dir():
        raise PassrtError(f"cannot write {out}: directory {out.parent} does not exist")
    if workspace_mb is not None and workspace_mb <= 0:
        raise PassrtError(f"--workspace must be a positive number of MB, got {workspace_mb}")
    plugin_nodes = sum(1 for n in model.graph.node if n.op_type == contract.PLUGIN_NAME)
    lib = None
    if plugin_nodes or plugin is not None:
        try:
            lib = resolve_plugin(plugin)
        except PassrtError as e:
            raise PassrtError(f"{onnx_path.name} has {plugin_nodes} {contract.PLUGIN_NAME} nodes, which need "
                              f"passrt's TensorRT plugin: {e}" if plugin_nodes else str(e)) from None
    trt = import_tensorrt()
    if lib is not None:
        load_plugin(lib)
    gpu, capability = gpu_info()
    logger = get_logger(trt)
    try:
        builder = trt.Builder(logger)
    except (TypeError, RuntimeError) as e:  # pybind's "factory function returned nullptr": no usable GPU
        raise PassrtError(f"TensorRT could not create a builder ({one_line(e)}): is there a CUDA GPU and driver "
                          "TensorRT can use? (see its log above)") from None
    network = builder.create_network(network_flags(trt, builder))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), path=str(onnx_path)):
        hint = f" (is {lib} built for this TensorRT?)" if lib is not None and plugin_nodes else ""
        raise PassrtError(f"TensorRT's ONNX parser rejected {onnx_path}: {parser_errors(parser)}{hint}")
    config = builder.create_builder_config()
    if fp16 and not getattr(builder, "platform_has_fast_fp16", True):
        warn(f"{gpu or 'this GPU'} has no fast fp16: building in fp32 (--fp16 ignored)")
        fp16 = False
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    set_workspace(trt, config, workspace_mb)
    aliased_state = enable_aliased_state(trt, config)
    channel_last = channel_last_state(trt, network, model, fp16) if plugin_nodes else []
    monitor = progress_monitor(trt) if progress else None
    if monitor is not None:
        config.progress_monitor = monitor  # kept alive by `monitor` until the build returns
    if progress:
        print(f"building a TensorRT {trt.__version__} engine from {onnx_path} ({'fp16' if fp16 else 'fp32'}) for "
              f"{gpu or 'this GPU'}: this takes minutes (tens of minutes on a Jetson Nano) ...",
              file=sys.stderr, flush=True)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise PassrtError(f"TensorRT could not build an engine from {onnx_path} (its log above says why)")
    _write_atomic(out, serialized)
    if progress:
        print(f"built in {seconds:.0f} s", file=sys.stderr, flush=True)

    def io(tensors):
        return [{"name": t.name, "shape": [int(d) for d in t.shape]} for t in tensors]

    from passrt.export.onnx_export import metadata

    sidecar = {
        "engine": out.name, "onnx": str(onnx_path), "tensorrt": trt.__version__, "gpu": gpu,
        "compute_capability": list(capability) if capability else None,
        "plugin": {"path": str(lib), "sha256": sha256_file(lib)} if lib is not None else None,
        "plugin_nodes": plugin_nodes, "fp16": fp16, "workspace_mb": workspace_mb,
        "aliased_state": aliased_state, "channel_last_state": len(channel_last), "metadata": metadata(model),
        "inputs": io(network.get_input(i) for i in range(network.num_inputs)),
        "outputs": io(network.get_output(i) for i in range(network.num_outputs)),
        "build_seconds": round(seconds, 1), "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_atomic(sidecar_path(out), (json.dumps(sidecar, indent=2) + "\n").encode())
    return sidecar
