"""The TensorRT plugin in plugins/tensorrt/ (PassSparseConv2d).

What can run where:
- The ONNX contract (attribute names, types and lengths; op_type, version, namespace) is
  checked against the plugin's C++ source everywhere: no compiler needed.
- With a C++ compiler only: the plugin's TensorRT-free half (sparseConvAttributes.cpp) compiles
  with -Werror and plugins/tensorrt/tests/attributesTest.cpp passes.
- With TensorRT's public headers (PASSRT_TRT_HEADERS, a directory holding ``8.2.1/`` and/or
  ``10.3.0/``; see plugins/tensorrt/README.md for how to extract them from NVIDIA/TensorRT),
  a C++ compiler and the CUDA headers: ``compile_check.sh`` for each TensorRT generation, and
  a host-only smoke test (plugins/tensorrt/tests/hostSmokeTest.cpp) that links the plugin against stand-ins for libnvinfer, libcudart and
  the kernel and drives it as TensorRT would (no TensorRT library, no GPU).
- With TensorRT's Python package, a GPU and the built libpassrt_trt.so: a real engine from an
  ONNX PassSparseConv2d node, compared over two frames with passrt's PyTorch reference.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from passrt import contract
from passrt.kernels import sparse_conv2d
from passrt.kernels.tables import tile_grid
from tests.conftest import require_cxx, skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "plugins" / "tensorrt"
KERNEL_DIR = ROOT / "passrt" / "csrc" / "kernels"

# The ONNX node the plugin implements, as the exporter writes it (passrt/export/contract.py):
# attribute name -> (PluginField type, number of values), in this order.
CONTRACT_OP = {"op_type": contract.PLUGIN_NAME, "plugin_version": contract.PLUGIN_VERSION,
               "plugin_namespace": contract.PLUGIN_NAMESPACE}
CONTRACT_ATTRIBUTES = [
    ("kernel_shape", "INT32", 2),
    ("strides", "INT32", 2),
    ("dilations", "INT32", 2),
    ("pads", "INT32", 4),
    ("group", "INT32", 1),
    ("tile", "INT32", 1),
    ("activation", "INT32", 1),
    ("activation_alpha", "FLOAT32", 1),
    ("post_activation", "INT32", 1),
]
HEADER_VERSIONS = ["8.2.1", "10.3.0"]
PLUGIN_SOURCES = sorted(p.name for p in PLUGIN_DIR.glob("*.[ch]*") if p.name != "pluginInfo.h" and p.suffix != ".txt")


# --------------------------------------------------------------------------------------------
# The ONNX contract against the source.

def _attribute_table():
    """Rows of kAttributes in sparseConvAttributes.h: (name, type, length, member)."""
    text = (PLUGIN_DIR / "sparseConvAttributes.h").read_text()
    table = re.search(r"constexpr AttributeSpec kAttributes\[\] = \{(.*?)\n\};", text, re.S)
    assert table, "kAttributes not found in sparseConvAttributes.h"
    row = re.compile(r'\{"(\w+)",\s*FieldType::k(\w+),\s*(\d+),\s*offsetof\(SparseConvAttributes,\s*(\w+)\)\}')
    rows = [(m[0], m[1].upper(), int(m[2]), m[3]) for m in row.findall(table.group(1))]  # kInt32 -> INT32
    # Every non-empty line of the table must be a row the pattern understood.
    lines = [ln for ln in table.group(1).splitlines() if ln.strip()]
    assert len(rows) == len(lines), f"unparsed rows in kAttributes: {lines}"
    return text, rows


def _struct_members():
    """Members of SparseConvAttributes in sparseConvAttributes.h: name -> (C++ type, count)."""
    text = (PLUGIN_DIR / "sparseConvAttributes.h").read_text()
    body = re.search(r"struct SparseConvAttributes\s*\{(.*?)\n\};", text, re.S)
    assert body, "struct SparseConvAttributes not found"
    members = {}
    for ctype, name, count in re.findall(r"^\s*(int32_t|float)\s+(\w+)(?:\[(\d+)\])?\s*\{", body.group(1), re.M):
        members[name] = (ctype, int(count or 1))
    return members


def test_plugin_attributes_match_onnx_contract():
    assert [a[0] for a in CONTRACT_ATTRIBUTES] == list(contract.ATTRIBUTES)  # what the exporter writes
    text, rows = _attribute_table()
    assert [(n, t, k) for n, t, k, _ in rows] == CONTRACT_ATTRIBUTES

    # Each row stores into a member of the right C++ type and size, and no member is left out.
    members = _struct_members()
    used = [m for *_, m in rows]
    assert sorted(used) == sorted(members), (used, members)
    for name, ftype, length, member in rows:
        ctype, count = members[member]
        assert (ctype, count) == ({"INT32": "int32_t", "FLOAT32": "float"}[ftype], length), name

    # The creators advertise exactly this table (the ONNX parser passes only advertised attributes).
    common = (PLUGIN_DIR / "passSparseConv2dPluginCommon.cpp").read_text()
    assert "AdvertisedFields::AdvertisedFields()" in common and "for (AttributeSpec const& spec : kAttributes)" in common


def test_plugin_identity_is_spelled_once():
    """pluginInfo.h holds the identity (tests/test_contract.py checks it against the contract); the
    plugin's code uses its constants, never the literals (comments may)."""
    for source in PLUGIN_SOURCES:
        code = re.sub(r"//[^\n]*", "", (PLUGIN_DIR / source).read_text())
        for value in CONTRACT_OP.values():
            assert f'"{value}"' not in code, f'{source} spells out "{value}"'


# --------------------------------------------------------------------------------------------
# The plugin's TensorRT-free half, with a C++ compiler only (runs in CI; a compile error fails).

def test_plugin_common_without_tensorrt(tmp_path):
    """sparseConvAttributes.cpp (parsing, validation, serialization, shape checks) against the kernel
    header, with warnings as errors, then plugins/tensorrt/tests/attributesTest.cpp run."""
    cxx = require_cxx("the plugin's TensorRT-free half cannot be compiled")
    exe = tmp_path / "attributesTest"
    build = subprocess.run(
        [cxx, "-std=c++17", "-O0", "-Wall", "-Wextra", "-Wshadow", "-Werror", "-I", str(KERNEL_DIR), "-I",
         str(PLUGIN_DIR), str(PLUGIN_DIR / "tests" / "attributesTest.cpp"), str(PLUGIN_DIR / "sparseConvAttributes.cpp"),
         "-o", str(exe)],
        capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "OK: 0 failure(s)" in run.stdout, run.stdout + run.stderr


# --------------------------------------------------------------------------------------------
# Compile checks against TensorRT's public headers.

def _headers(version):
    root = os.environ.get("PASSRT_TRT_HEADERS")
    if not root:
        skip_or_fail(f"PASSRT_TRT_HEADERS is not set: no TensorRT {version} headers to compile against "
                    "(plugins/tensorrt/README.md, 'What was checked', shows how to get them)")
    path = Path(root) / version
    if not path.is_dir():
        skip_or_fail(f"no TensorRT {version} headers in {path}")
    return path


def _include_dir(path):
    return path / "include" if (path / "include" / "NvInfer.h").exists() else path


def _cuda_include():
    candidates = [os.environ.get("CUDA_HOME", "") + "/include", "/usr/local/cuda/include"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.insert(0, str(Path(nvcc).resolve().parents[1] / "include"))
    for c in candidates:
        if Path(c, "cuda_runtime_api.h").exists():
            return c
    skip_or_fail("no CUDA headers (cuda_runtime_api.h): set CUDA_HOME")


@pytest.mark.parametrize("version", HEADER_VERSIONS)
def test_compile_check(version):
    headers = _headers(version)
    out = subprocess.run(["bash", str(PLUGIN_DIR / "compile_check.sh"), str(headers)], capture_output=True, text=True)
    if out.returncode == 2:
        skip_or_fail(out.stderr.strip())
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"OK (TensorRT {version})" in out.stdout


def plugin_sources(version):
    """The plugin's sources for one TensorRT generation, as CMakeLists.txt and compile_check.sh pick them."""
    generation = "passSparseConv2dPluginV3.cpp" if int(version.split(".")[0]) >= 10 else "passSparseConv2dPluginV2.cpp"
    return [PLUGIN_DIR / f for f in ("sparseConvAttributes.cpp", "passSparseConv2dPluginCommon.cpp", "laidWeights.cpp",
                                     generation)]


# Host-only smoke test (plugins/tensorrt/tests/hostSmokeTest.cpp): stand-ins for TensorRT's and
# CUDA's few entry points, and a program that drives the plugin as TensorRT would.
@pytest.mark.parametrize("version", HEADER_VERSIONS)
def test_plugin_host_smoke(version, tmp_path):
    headers = _include_dir(_headers(version))
    cxx = require_cxx("the host smoke test cannot be compiled")
    exe = tmp_path / "hostSmoke"
    build = subprocess.run(
        [cxx, "-std=c++17", "-O0", "-Wall", "-Wno-deprecated-declarations", "-isystem", str(headers),
         "-isystem", _cuda_include(), "-I", str(KERNEL_DIR), "-I", str(PLUGIN_DIR),
         str(PLUGIN_DIR / "tests" / "hostSmokeTest.cpp"), *map(str, plugin_sources(version)), "-o", str(exe)],
        capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "OK: 0 failure(s)" in run.stdout, run.stdout + run.stderr


# --------------------------------------------------------------------------------------------
# Building the plugin where TensorRT came from pip: no headers in the wheels (the git tag's include/),
# only libnvinfer.so.10 (no development symlink), and no libcudart on the library path when the plugin
# is loaded first. A stand-in libnvinfer.so.10 laid out like pip's tensorrt_libs, real CMake and nvcc.

def _pip_like_tensorrt(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler for the stand-in libnvinfer.so.10")
    libs = tmp_path / "tensorrt_libs"
    libs.mkdir()
    stub = tmp_path / "stub.c"
    stub.write_text("void* getPluginRegistry(void) { return 0; }\nvoid* getLogger(void) { return 0; }\n")
    done = subprocess.run([cc, "-shared", "-fPIC", str(stub), "-Wl,-soname,libnvinfer.so.10", "-o",
                           str(libs / "libnvinfer.so.10")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return libs


def _cmake_configure(build, *defines):
    cmake = shutil.which("cmake")
    if not cmake:
        skip_or_fail("cmake not found: the plugin's CMake build is not checked")
    if not shutil.which("nvcc"):
        skip_or_fail("nvcc not found: the plugin's CMake build is not checked")
    return subprocess.run([cmake, "-S", str(PLUGIN_DIR), "-B", str(build), "-DCMAKE_CUDA_ARCHITECTURES=87", *defines],
                          capture_output=True, text=True)


def test_plugin_builds_against_pip_tensorrt(tmp_path):
    headers = _include_dir(_headers("10.3.0"))
    libs = _pip_like_tensorrt(tmp_path)
    build = tmp_path / "build"
    done = _cmake_configure(build, f"-DTENSORRT_ROOT={libs}", f"-DTENSORRT_INCLUDE_DIR={headers}",
                            "-DPASSRT_STATIC_CUDART=ON")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"linking {libs / 'libnvinfer.so.10'}, CUDA runtime Static" in done.stdout
    done = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    needed = subprocess.run(["readelf", "-d", str(build / "libpassrt_trt.so")], capture_output=True, text=True).stdout
    assert "[libnvinfer.so.10]" in needed, needed
    assert "libcudart" not in needed, "the CUDA runtime is linked statically: nothing to find at load time"


def test_plugin_build_names_what_is_missing(tmp_path):
    headers = _include_dir(_headers("10.3.0"))
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _cmake_configure(tmp_path / "b1", f"-DTENSORRT_ROOT={empty}", f"-DTENSORRT_INCLUDE_DIR={headers}")
    assert done.returncode != 0 and "-DTENSORRT_NVINFER_LIBRARY=" in done.stderr and "tensorrt_libs" in done.stderr
    done = _cmake_configure(tmp_path / "b2", f"-DTENSORRT_ROOT={empty}")
    if "TensorRT headers not found" not in done.stderr:  # a machine with TensorRT installed finds its own
        assert done.returncode == 0
    else:
        assert done.returncode != 0 and "NVIDIA/TensorRT git tag" in done.stderr


# --------------------------------------------------------------------------------------------
# A real engine (TensorRT, a GPU and the built library).

# The functions behind contract's activation names; the codes come from the contract.
ACTIVATION_FNS = {None: None, "relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish, "silu": F.silu,
                  "sigmoid": torch.sigmoid}


def _activation(code, alpha):
    name = contract.ACTIVATION_NAMES[code]
    return (lambda v: F.leaky_relu(v, alpha)) if name == "leaky_relu" else ACTIVATION_FNS[name]


def _plugin_library():
    env = os.environ.get("PASSRT_TRT_PLUGIN")
    candidates = [Path(env)] if env else [PLUGIN_DIR / "build" / "libpassrt_trt.so"]
    for c in candidates:
        if c.is_file():
            return c
    skip_or_fail(f"libpassrt_trt.so not built ({', '.join(map(str, candidates))}; set PASSRT_TRT_PLUGIN)")


def _onnx_model(shapes, weight, bias, attrs, with_residual, fp16=False):
    """One PassSparseConv2d node, as the exporter writes it (domain passrt, opset 13, IR 7 for TensorRT 8).

    ``fp16``: x, cache_in/cache_out, residual, weight and bias are FLOAT16 in the graph itself (the mask
    stays FLOAT, as the plugin declares). The builder's FP16 flag alone would leave the graph's I/O
    FLOAT and TensorRT free to run the plugin's fp32 path between reformat layers: the half path
    would never be tested."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    elem, np_dtype = (TensorProto.FLOAT16, np.float16) if fp16 else (TensorProto.FLOAT, np.float32)
    names = ["x", "tile_mask", "cache_in", "weight", "bias"] + (["residual"] if with_residual else [])
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT if n == "tile_mask" else elem, shapes[n])
              for n in names if n not in ("weight", "bias")]
    node = helper.make_node("PassSparseConv2d", names, ["cache_out"], domain="passrt", plugin_version="1",
                            plugin_namespace="passrt", **attrs)
    graph = helper.make_graph([node], "pass_sparse_conv2d", inputs,
                              [helper.make_tensor_value_info("cache_out", elem, shapes["cache_in"])],
                              initializer=[numpy_helper.from_array(weight.numpy().astype(np_dtype), "weight"),
                                           numpy_helper.from_array(bias.numpy().astype(np_dtype), "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("passrt", 1)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _build_engine(trt, logger, model_bytes, fp16, hwc8=False):
    """hwc8: x, the caches and the residual as fp16 HWC8 engine I/O (what `passrt build` gives plugin caches),
    so the plugin runs the NHWC tile kernels on kHWC8's padded rows."""
    builder = trt.Builder(logger)
    explicit_batch = 0 if int(trt.__version__.split(".")[0]) >= 10 else \
        1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(explicit_batch)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model_bytes):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        pytest.fail(f"ONNX parser rejected the PassSparseConv2d node:\n{errors}")
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if hwc8:
        for tensor in [network.get_input(i) for i in range(network.num_inputs)] + \
                      [network.get_output(i) for i in range(network.num_outputs)]:
            if tensor.name != "tile_mask":
                tensor.allowed_formats = 1 << int(trt.TensorFormat.HWC8)
    serialized = builder.build_serialized_network(network, config)
    assert serialized is not None, "engine build failed (see TensorRT's log)"
    return trt.Runtime(logger).deserialize_cuda_engine(serialized)


def _run(trt, engine, context, tensors):
    """Runs the engine on CUDA tensors by name (TensorRT 8.5+/10 tensor API, else bindings)."""
    stream = torch.cuda.current_stream()
    if hasattr(context, "set_tensor_address") and hasattr(context, "execute_async_v3"):
        for name, t in tensors.items():
            context.set_tensor_address(name, t.data_ptr())
        assert context.execute_async_v3(stream.cuda_stream)
    else:
        bindings = [0] * engine.num_bindings
        for name, t in tensors.items():
            bindings[engine.get_binding_index(name)] = t.data_ptr()
        assert context.execute_async_v2(bindings, stream.cuda_stream)
    stream.synchronize()


ACT = contract.ACTIVATION_CODES
CASES = {
    # name: (N, C_in, H, W, C_out, k, stride, dilation, pads (top, left, bottom, right), group, tile,
    #        activation, alpha, post_activation, residual, fp16)
    "asymmetric-pads-grouped-residual": (2, 4, 10, 11, 8, 3, 2, 1, (1, 0, 1, 2), 2, 2, ACT["leaky_relu"], 0.2,
                                         ACT["relu"], True, False),
    "depthwise-relu6": (1, 6, 13, 9, 6, 3, 1, 1, (1, 1, 1, 1), 6, 4, ACT["relu6"], 0.0, ACT[None], False, False),
    "dilated-silu-residual": (1, 8, 9, 12, 5, 3, 1, 2, (2, 2, 2, 2), 1, 3, ACT["silu"], 0.0, ACT[None], True, False),
    "fp16-hardswish": (1, 8, 12, 12, 16, 1, 1, 1, (0, 0, 0, 0), 1, 4, ACT["hardswish"], 0.0, ACT[None], True, True),
    "fp16-depthwise-tile1": (1, 24, 9, 10, 24, 3, 2, 1, (0, 0, 1, 1), 24, 1, ACT["relu6"], 0.0, ACT[None], False, True),
}


def test_fp16_cases_declare_half_io():
    """The fp16 engine cases put FLOAT16 in the graph's I/O (not only the builder flag), mask FLOAT."""
    import onnx

    for case, row in CASES.items():
        n, cin, h, w, cout, k, s, d, pads, g, tile, *_, with_residual, fp16 = row
        shapes = {"x": [n, cin, h, w], "tile_mask": [n, 1, 2, 2], "cache_in": [n, cout, 4, 4],
                  "residual": [n, cout, 4, 4]}
        attrs = dict(kernel_shape=[k, k], strides=[s, s], dilations=[d, d], pads=list(pads), group=g, tile=tile,
                     activation=0, activation_alpha=0.0, post_activation=0)
        model = onnx.load_from_string(_onnx_model(shapes, torch.zeros(cout, cin // g, k, k), torch.zeros(cout),
                                                  attrs, with_residual, fp16))
        want = onnx.TensorProto.FLOAT16 if fp16 else onnx.TensorProto.FLOAT
        types = {v.name: v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]}
        assert types.pop("tile_mask") == onnx.TensorProto.FLOAT, case
        assert set(types.values()) == {want}, (case, types)
        assert {t.data_type for t in model.graph.initializer} == {want}, case
    assert sum(row[-1] for row in CASES.values()) >= 2, "fp16 cases: a 1x1 GEMM and a depthwise conv"


# Run as fp16 HWC8 engine I/O (the NHWC tile kernels on padded rows): SSDLite's 12-channel head, a grouped conv.
HWC8_CASES = {
    "fp16-hwc8-head-12ch": (1, 24, 10, 13, 12, 3, 1, 1, (1, 1, 1, 1), 1, 2, ACT["relu6"], 0.0, ACT[None], True, True),
    "fp16-hwc8-grouped": (1, 8, 9, 11, 12, 3, 1, 1, (1, 1, 1, 1), 4, 2, ACT["relu"], 0.0, ACT[None], True, True),
}


def to_hwc8(t: torch.Tensor) -> torch.Tensor:
    """NCHW -> TensorRT's HWC8 storage: [N, H, W, C rounded up to 8], fp16, the padding zero."""
    n, c, h, w = t.shape
    out = torch.zeros(n, h, w, -(-c // 8) * 8, dtype=torch.float16)
    out[..., :c] = t.permute(0, 2, 3, 1)
    return out


def from_hwc8(t: torch.Tensor, c: int) -> torch.Tensor:
    return t[..., :c].permute(0, 3, 1, 2).float()


@pytest.mark.tensorrt
@pytest.mark.parametrize("case", list(CASES) + list(HWC8_CASES))
def test_engine_matches_reference(case):
    try:
        import tensorrt as trt  # Imported here: most machines (and CI) have no TensorRT.
    except ImportError as e:
        skip_or_fail(f"TensorRT's Python package is not installed ({e})")
    if not torch.cuda.is_available():
        skip_or_fail("no CUDA device for TensorRT")
    import ctypes

    # Loading the library registers the plugin; after `import tensorrt`, so that the library binds
    # to the libnvinfer already in the process and registers in its registry.
    ctypes.CDLL(str(_plugin_library()), mode=ctypes.RTLD_GLOBAL)

    hwc8 = case in HWC8_CASES
    n, cin, h, w, cout, k, s, d, pads, g, tile, act, alpha, post, with_residual, fp16 = {**CASES, **HWC8_CASES}[case]
    top, left, bottom, right = pads
    ho = (h + top + bottom - d * (k - 1) - 1) // s + 1
    wo = (w + left + right - d * (k - 1) - 1) // s + 1
    th, tw = tile_grid(ho, wo, tile)
    gen = torch.Generator().manual_seed(len(case))
    weight = torch.randn(cout, cin // g, k, k, generator=gen) * 0.5
    bias = torch.randn(cout, generator=gen)
    shapes = {"x": [n, cin, h, w], "tile_mask": [n, 1, th, tw], "cache_in": [n, cout, ho, wo],
              "residual": [n, cout, ho, wo]}
    attrs = dict(kernel_shape=[k, k], strides=[s, s], dilations=[d, d], pads=list(pads), group=g, tile=tile,
                 activation=act, activation_alpha=float(alpha), post_activation=post)

    logger = trt.Logger(trt.Logger.WARNING)
    engine = _build_engine(trt, logger, _onnx_model(shapes, weight, bias, attrs, with_residual, fp16), fp16, hwc8)
    context = engine.create_execution_context()
    io_dtype = torch.float16 if fp16 else torch.float32
    if fp16:  # the engine's I/O must be half, so the plugin's half path is the one that ran
        dtype_of = (engine.get_tensor_dtype if hasattr(engine, "get_tensor_dtype")
                    else lambda n: engine.get_binding_dtype(engine.get_binding_index(n)))
        assert dtype_of("cache_out") == trt.DataType.HALF and dtype_of("x") == trt.DataType.HALF
        weight, bias = weight.half().float(), bias.half().float()  # the values the engine holds

    act_fn, post_fn = _activation(act, alpha), _activation(post, alpha)
    # Inputs are drawn as io_dtype values, so the fp32 reference sees exactly what the engine reads.
    cache = torch.randn(n, cout, ho, wo, generator=gen).to(io_dtype).float()
    for _ in range(2):  # the second frame starts from the first one's cache_out
        x = torch.randn(n, cin, h, w, generator=gen).to(io_dtype).float()
        mask = (torch.rand(n, 1, th, tw, generator=gen) > 0.5).float()
        residual = torch.randn(n, cout, ho, wo, generator=gen).to(io_dtype).float() if with_residual else None
        want = cache.clone()
        for i in range(n):  # the reference is batch 1; padding in its (top, bottom, left, right) order
            sparse_conv2d(x[i:i + 1], weight, bias, want[i:i + 1], mask[i, 0], stride=s,
                          padding=(top, bottom, left, right), dilation=d, groups=g, tile=tile, activation=act_fn,
                          residual=None if residual is None else residual[i:i + 1])
        cells = mask.repeat_interleave(tile, 2).repeat_interleave(tile, 3)[:, :, :ho, :wo].bool()
        if post_fn is not None:  # the reference has no post-activation: apply it on the active cells
            want = torch.where(cells, post_fn(want), want)

        tensors = {"x": x, "cache_in": cache, "cache_out": torch.empty_like(cache)}
        if with_residual:
            tensors["residual"] = residual
        layout = to_hwc8 if hwc8 else (lambda t: t)  # noqa: E731
        tensors = {name: layout(t.to(io_dtype)).cuda().contiguous() for name, t in tensors.items()}
        tensors["tile_mask"] = mask.cuda().contiguous()
        _run(trt, engine, context, tensors)
        got = from_hwc8(tensors["cache_out"].cpu(), cout) if hwc8 else tensors["cache_out"].cpu().float()
        tol = dict(rtol=2e-2, atol=2e-2) if fp16 else dict(rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(got, want, **tol)
        keep = ~cells.expand_as(cache)  # inactive cells are the previous cache, bit for bit, in both dtypes
        assert torch.equal(got[keep], cache[keep])
        cache = got
