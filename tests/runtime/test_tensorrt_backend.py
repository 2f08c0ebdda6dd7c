"""`passrt build`, the TensorRT backend and `--engine` in run/bench.

Without TensorRT (always run): every way of failing is one `passrt: error:` line; the sidecar
check; the I/O plan of the ONNX contract; and `build_engine` driven through stand-ins for
TensorRT 8 and 10's Python API (the calls each generation needs). With TensorRT and a GPU
(marked `tensorrt`): real engines, dense and sparse, against PyTorch and the reference runner.
"""

import json
import sys
import types

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from passrt.cli.main import main
from passrt.errors import PassrtError
from passrt import assets, contract
from passrt.runtime import tensorrt_backend as tb
from passrt.runtime import tensorrt_build as tbuild
from tests.conftest import skip_or_fail


def assert_one_line_error(capsys, *needles):
    err = capsys.readouterr().err
    assert err.startswith("passrt: error:"), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err
    return err


def build_main(argv):
    """``main(["build", ...])``, failing clearly until passrt/cli/main.py registers build_cmd."""
    import argparse

    from passrt.cli.main import build_parser

    commands = next(a.choices for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    if "build" not in commands:
        pytest.fail("`passrt build` is not registered: passrt/cli/main.py must call passrt.cli.build_cmd.register")
    return main(["build", *argv])


@pytest.fixture
def no_tensorrt(monkeypatch):
    """`import tensorrt` fails, whether or not this machine has it."""
    monkeypatch.setitem(sys.modules, "tensorrt", None)


@pytest.fixture
def no_default_plugin(monkeypatch, tmp_path):
    monkeypatch.delenv(tbuild.PLUGIN_ENV, raising=False)
    monkeypatch.setattr(tbuild, "default_plugin_paths", lambda: [tmp_path / "nowhere" / "libpassrt_trt.so"])


def conv_onnx(path, plugin_node=False):
    """A one-node ONNX file: a Conv, or a PassSparseConv2d node as the exporter writes it."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    w = numpy_helper.from_array(np.zeros((4, 3, 3, 3), np.float32), "w")
    if plugin_node:
        node = helper.make_node(contract.PLUGIN_NAME, ["image", "mask", "cache", "w", "b"], ["y"],
                                domain=contract.DOMAIN, plugin_version=contract.PLUGIN_VERSION,
                                plugin_namespace=contract.PLUGIN_NAMESPACE)
    else:
        node = helper.make_node("Conv", ["image", "w"], ["y"], pads=[1, 1, 1, 1])
    model = helper.make_model(helper.make_graph([node], "g", [x], [y], initializer=[w]))
    entry = model.metadata_props.add()
    entry.key, entry.value = contract.META_MODEL, "ssdlite-pedestrian"
    onnx.save(model, str(path))
    return path


# ---------------------------------------------------------------------------------------------
# Errors without TensorRT

def test_missing_tensorrt_is_one_clear_line(no_tensorrt):
    with pytest.raises(PassrtError) as e:
        tb.import_tensorrt()
    msg = str(e.value)
    assert "TensorRT is not installed" in msg and "JetPack" in msg and "pip install tensorrt" in msg
    assert "\n" not in msg


def test_missing_plugin_paths(monkeypatch, tmp_path, no_default_plugin):
    with pytest.raises(PassrtError, match="no such TensorRT plugin library .--plugin.*cmake -S plugins/tensorrt"):
        tb.load_plugin(tmp_path / "libnope.so")
    monkeypatch.setenv(tbuild.PLUGIN_ENV, str(tmp_path / "libenv.so"))
    with pytest.raises(PassrtError, match=r"libenv.so: no such TensorRT plugin library \(\$PASSRT_TRT_PLUGIN\)"):
        tb.load_plugin()
    monkeypatch.delenv(tbuild.PLUGIN_ENV)
    with pytest.raises(PassrtError, match="plugin library is not built .*cmake --build plugins/tensorrt/build"):
        tb.load_plugin()


def test_plugin_that_does_not_load_names_the_os_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # ctypes needs it imported first
    lib = tmp_path / "libpassrt_trt.so"
    lib.write_text("not a shared library")
    with pytest.raises(PassrtError) as e:
        tb.load_plugin(lib)
    msg = str(e.value)
    assert msg.startswith(f"cannot load the TensorRT plugin {lib}:") and "\n" not in msg
    assert "invalid ELF header" in msg or "file too short" in msg  # the loader's own words
    assert str(lib) not in tbuild._LOADED


def test_missing_engine_file(tmp_path):
    with pytest.raises(PassrtError, match="x.engine: no such TensorRT engine file .*passrt build MODEL.onnx -o"):
        tb.TensorRTBackend(tmp_path / "x.engine")


def test_missing_sidecar_warns(tmp_path, capsys):
    assert tb.read_sidecar(tmp_path / "m.engine") is None
    assert "m.engine.json not found" in capsys.readouterr().err


SIDECAR = {"engine": "rd.engine", "onnx": "rd.onnx", "tensorrt": "8.6.1", "gpu": "Orin", "compute_capability": [8, 7],
           "plugin": {"path": "plugins/tensorrt/build/libpassrt_trt.so", "sha256": "0" * 64}, "fp16": True}


def test_check_compatible():
    assert tb.check_compatible(SIDECAR, "8.6.1", "Orin", (8, 7)) is None
    assert tb.check_compatible(SIDECAR, "8.6.1.6", "Orin", (8, 7)) is None  # JetPack's four-part version
    assert tb.check_compatible(SIDECAR, "8.6.1", "Jetson AGX Orin", (8, 7)) is None  # same capability
    assert tb.check_compatible({}, "10.3.0", "NVIDIA H100", (9, 0)) is None  # nothing to compare
    msg = tb.check_compatible(SIDECAR, "10.3.0", "NVIDIA H100 80GB HBM3", (9, 0), engine="models/rd.engine")
    assert msg == ("models/rd.engine was built with TensorRT 8.6.1 for Orin (sm_87); this machine has TensorRT 10.3.0 "
                   "and NVIDIA H100 80GB HBM3 (sm_90): rebuild it with `passrt build rd.onnx --plugin "
                   "plugins/tensorrt/build/libpassrt_trt.so --fp16 -o models/rd.engine`")
    assert "TensorRT 8.6.1" in tb.check_compatible(SIDECAR, "8.5.2", "Orin", (8, 7))  # another TensorRT only
    msg = tb.check_compatible({**SIDECAR, "plugin": None, "fp16": False}, "8.6.1", "Xavier", (7, 2))  # another GPU only
    assert "for Orin (sm_87)" in msg and "Xavier (sm_72)" in msg and "`passrt build rd.onnx -o rd.engine`" in msg


def test_build_cli_errors(tmp_path, capsys, no_tensorrt, no_default_plugin):
    assert build_main([str(tmp_path / "missing.onnx")]) == 2
    assert_one_line_error(capsys, "missing.onnx: no such ONNX file")
    (tmp_path / "junk.onnx").write_bytes(b"\x00\xffnot onnx")
    assert build_main([str(tmp_path / "junk.onnx")]) == 2
    assert_one_line_error(capsys, "junk.onnx: not a readable ONNX file")
    dense = conv_onnx(tmp_path / "dense.onnx")
    assert build_main([str(dense), "-o", str(tmp_path / "no" / "dir.engine")]) == 2
    assert_one_line_error(capsys, "does not exist")
    assert build_main([str(dense)]) == 2
    assert_one_line_error(capsys, "TensorRT is not installed")
    sparse = conv_onnx(tmp_path / "sparse.onnx", plugin_node=True)
    assert build_main([str(sparse)]) == 2
    assert_one_line_error(capsys, "sparse.onnx has 1 PassSparseConv2d nodes, which need passrt's TensorRT plugin",
                          "cmake -S plugins/tensorrt")


def test_run_and_bench_engine_errors(tmp_path, capsys, no_tensorrt):
    engine = tmp_path / "x.engine"
    assert main(["run", "--engine", str(engine), "--input", "vtest", "--headless"]) == 2
    assert_one_line_error(capsys, "x.engine: no such TensorRT engine file")
    engine.write_bytes(b"engine")
    assert main(["run", "--engine", str(engine), "--input", "vtest", "--headless"]) == 2
    assert_one_line_error(capsys, "TensorRT is not installed")
    assert main(["run", "--engine", str(engine), "--input", "vtest", "--headless", "--policy", "exact"]) == 2
    assert_one_line_error(capsys, "--policy cannot be used with --engine")
    assert main(["run", "--input", "vtest", "--headless", "--plugin", "libpassrt_trt.so"]) == 2
    assert_one_line_error(capsys, "--plugin goes with --engine")
    assert main(["bench", "--input", "vtest", "--engine", str(engine)]) == 2
    assert_one_line_error(capsys, "TensorRT is not installed")


# ---------------------------------------------------------------------------------------------
# The ONNX contract's I/O

T = tb.TensorInfo


def test_plan_io_sparse_and_dense():
    sparse = [T("image", True, (1, 3, 8, 8), "FLOAT"), T("refresh", True, (1,), "FLOAT"),
              T("state.ref", True, (1, 3, 8, 8), "FLOAT"), T("state.c1", True, (1, 4, 4, 4), "FLOAT"),
              T("output.10", False, (1, 2), "FLOAT"), T("output.2", False, (1, 5), "FLOAT"),
              T("active_fraction", False, (1,), "FLOAT"), T("state_out.ref", False, (1, 3, 8, 8), "FLOAT"),
              T("state_out.c1", False, (1, 4, 4, 4), "FLOAT")]
    plan = tb.plan_io(sparse)
    assert (plan.image, plan.refresh, plan.active) == ("image", "refresh", "active_fraction")
    assert plan.states == [("state.ref", "state_out.ref"), ("state.c1", "state_out.c1")]
    assert plan.outputs == ["output.2", "output.10"]
    dense = [T("image", True, (1, 3, 8, 8), "FLOAT"), T("b", False, (1, 2), "FLOAT"), T("a", False, (1, 2), "FLOAT")]
    assert tb.plan_io(dense, onnx_outputs=["a", "b"]).outputs == ["a", "b"]
    assert tb.plan_io(dense).outputs == ["b", "a"]
    with pytest.raises(PassrtError, match="state input state.c1 has no output state_out.c1"):
        tb.plan_io([t for t in sparse if t.name != "state_out.c1"])
    with pytest.raises(PassrtError, match="dynamic shape"):
        tb.plan_io([T("image", True, (-1, 3, 8, 8), "FLOAT"), T("y", False, (1,), "FLOAT")])
    with pytest.raises(PassrtError, match="expected one image input"):
        tb.plan_io([T("a", True, (1,), "FLOAT"), T("b", True, (1,), "FLOAT"), T("y", False, (1,), "FLOAT")])


class _Enum:
    def __init__(self, name):
        self.name = name

    def __eq__(self, other):
        return isinstance(other, _Enum) and other.name == self.name

    def __hash__(self):
        return hash(self.name)


@pytest.mark.parametrize("api", ["tensors", "bindings"])
def test_io_tensors_both_apis(api):
    specs = [("image", True, (1, 3, 8, 8), "FLOAT"), ("y", False, (1, 4), "HALF")]
    trt = types.SimpleNamespace(TensorIOMode=types.SimpleNamespace(INPUT=_Enum("INPUT"), OUTPUT=_Enum("OUTPUT")))
    if api == "tensors":  # TensorRT 8.5+ / 10
        engine = types.SimpleNamespace(
            num_io_tensors=2, get_tensor_name=lambda i: specs[i][0],
            get_tensor_mode=lambda n: _Enum("INPUT" if n == "image" else "OUTPUT"),
            get_tensor_shape=lambda n: dict((s[0], s[2]) for s in specs)[n],
            get_tensor_dtype=lambda n: _Enum(dict((s[0], s[3]) for s in specs)[n]))
    else:  # TensorRT 8.0-8.4
        engine = types.SimpleNamespace(
            num_bindings=2, get_binding_name=lambda i: specs[i][0], binding_is_input=lambda i: specs[i][1],
            get_binding_shape=lambda i: specs[i][2], get_binding_dtype=lambda i: _Enum(specs[i][3]))
    assert tb.io_tensors(trt, engine) == [T(*s) for s in specs]
    assert tb.torch_dtype("HALF") is torch.float16 and tb.torch_dtype("FLOAT") is torch.float32
    with pytest.raises(PassrtError, match="FP8"):
        tb.torch_dtype("FP8")


# ---------------------------------------------------------------------------------------------
# build_engine against stand-ins for TensorRT 8 and 10 (which calls each generation gets)

def fake_tensorrt(version, parse_ok=True, fast_fp16=True, build_ok=True):
    gen10 = version.startswith("10.")
    calls = {}
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)  # deprecated but present in 10
    trt.BuilderFlag = types.SimpleNamespace(FP16="FP16")
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    tensor = lambda name, shape: types.SimpleNamespace(name=name, shape=shape)  # noqa: E731

    class Network:
        num_inputs, num_outputs = 1, 1

        def get_input(self, i):
            return tensor("image", (1, 3, 8, 8))

        def get_output(self, i):
            return tensor("y", (1, 4, 8, 8))

    aliased_io = tuple(int(v) for v in version.split(".")[:2]) >= (10, 3)
    if aliased_io:  # TensorRT 10.3 added aliased plugin I/O as a preview feature
        trt.PreviewFeature = types.SimpleNamespace(ALIASED_PLUGIN_IO_10_03="ALIASED_PLUGIN_IO_10_03")

    class Config:
        def set_flag(self, flag):
            calls.setdefault("flags", []).append(flag)

        if aliased_io:
            def set_preview_feature(self, feature, on):
                calls.setdefault("preview", []).append((feature, on))

        if gen10:
            def set_memory_pool_limit(self, pool, size):
                calls["pool"] = (pool, size)
        else:
            def __setattr__(self, name, value):
                calls[name] = value

    class Builder:
        platform_has_fast_fp16 = fast_fp16

        def __init__(self, logger):
            pass

        def create_network(self, flags=0):
            calls["network_flags"] = flags
            return Network()

        def create_builder_config(self):
            return Config()

        def build_serialized_network(self, network, config):
            return b"ENGINE" if build_ok else None

    if not gen10:
        Builder.max_batch_size = 1  # implicit batch still exists in TensorRT 8

    class Error:
        def node(self):
            return 0

        def desc(self):
            return "No importer registered for op: Foo.\nmore"

        if gen10:
            def node_name(self):
                return "foo_1"

            def node_operator(self):
                return "Foo"

    class OnnxParser:
        num_errors = 0 if parse_ok else 2

        def __init__(self, network, logger):
            pass

        def parse(self, data, path=None):
            calls["parsed"] = (len(data), path)
            return parse_ok

        def get_error(self, i):
            return Error()

    trt.Builder, trt.OnnxParser = Builder, OnnxParser
    return trt, calls


@pytest.fixture
def fake_env(monkeypatch):
    monkeypatch.setattr(tbuild, "_LOGGER", None)
    monkeypatch.setattr(tbuild, "gpu_info", lambda: ("Fake GPU", (8, 7)))

    def install(*args, **kwargs):
        trt, calls = fake_tensorrt(*args, **kwargs)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        return calls
    return install


@pytest.mark.parametrize("version", ["8.2.1", "10.0.1", "10.3.0"])
def test_build_engine_with_stand_in_tensorrt(version, tmp_path, fake_env, capsys):
    calls = fake_env(version)
    onnx_path = conv_onnx(tmp_path / "m.onnx")
    side = tb.build_engine(onnx_path, fp16=True, workspace_mb=64 if version.startswith("10.") else None)
    engine = tmp_path / "m.engine"
    assert engine.read_bytes() == b"ENGINE" and not (tmp_path / "m.engine.tmp").exists()
    assert json.loads((tmp_path / "m.engine.json").read_text()) == side
    assert side["tensorrt"] == version and side["gpu"] == "Fake GPU" and side["compute_capability"] == [8, 7]
    assert side["fp16"] and side["plugin"] is None and side["metadata"] == {contract.META_MODEL: "ssdlite-pedestrian"}
    assert side["inputs"] == [{"name": "image", "shape": [1, 3, 8, 8]}] and side["outputs"][0]["name"] == "y"
    assert calls["flags"] == ["FP16"] and calls["parsed"][1] == str(onnx_path)
    # State in place: TensorRT >= 10.3 gets aliased plugin I/O turned on (the plugin asks for cache_out = cache_in)
    assert side["aliased_state"] == (version == "10.3.0")
    assert calls.get("preview") == ([("ALIASED_PLUGIN_IO_10_03", True)] if version == "10.3.0" else None)
    if version.startswith("8."):
        assert calls["network_flags"] == 1 and calls["max_workspace_size"] == tbuild.LEGACY_WORKSPACE_MB << 20
    else:
        assert calls["network_flags"] == 0 and calls["pool"] == ("WORKSPACE", 64 << 20)
    err = capsys.readouterr().err
    assert f"building a TensorRT {version} engine from {onnx_path} (fp16)" in err and "built in" in err


def test_build_engine_failures_with_stand_in_tensorrt(tmp_path, fake_env, capsys):
    onnx_path = conv_onnx(tmp_path / "m.onnx")
    fake_env("10.3.0", parse_ok=False)
    with pytest.raises(PassrtError) as e:
        tb.build_engine(onnx_path, progress=False)
    one = "node 0 'foo_1' (Foo): No importer registered for op: Foo. more"
    assert str(e.value) == f"TensorRT's ONNX parser rejected {onnx_path}: {one}; {one}"
    fake_env("8.6.1", build_ok=False)
    with pytest.raises(PassrtError, match="TensorRT could not build an engine"):
        tb.build_engine(onnx_path, progress=False)
    assert not (tmp_path / "m.engine").exists()
    calls = fake_env("8.6.1", fast_fp16=False)
    side = tb.build_engine(onnx_path, fp16=True, progress=False)
    assert not side["fp16"] and "flags" not in calls
    assert "no fast fp16" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# With TensorRT and a GPU

@pytest.fixture
def trt_gpu(monkeypatch):
    try:
        import tensorrt  # noqa: F401 - imported here: most machines (and CI) have no TensorRT
    except ImportError as e:
        skip_or_fail(f"TensorRT's Python package is not installed ({e})")
    if not torch.cuda.is_available():
        skip_or_fail("no CUDA device (or PyTorch without CUDA) for TensorRT")


class TinyNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 4, 3, stride=2, padding=1)

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.b(h), h.mean(dim=(2, 3))


@pytest.mark.tensorrt
def test_dense_engine_matches_torch(tmp_path, trt_gpu, capsys):
    torch.manual_seed(0)
    net, x = TinyNet().eval(), torch.rand(1, 3, 24, 32)
    onnx_path = tmp_path / "tiny.onnx"
    torch.onnx.export(net, (x,), str(onnx_path), dynamo=False, opset_version=13, input_names=["image"],
                      output_names=["features", "pooled"])
    assert build_main([str(onnx_path)]) == 0
    assert "wrote" in capsys.readouterr().out
    side = json.loads((tmp_path / "tiny.engine.json").read_text())
    assert [o["name"] for o in side["outputs"]] == ["features", "pooled"]
    engine = tb.TensorRTBackend(tmp_path / "tiny.engine")
    assert engine.input_hw == (24, 32) and not engine.sparse
    for frame in (x, x.flip(3), x):  # no state: the same frame gives the same answer
        with torch.no_grad():
            want = net(frame)
        got = engine(frame)
        assert len(got) == 2 and all(g.device.type == "cpu" for g in got)
        for g, w in zip(got, want):  # TensorRT may use TF32 for fp32 convs
            torch.testing.assert_close(g, w, rtol=1e-2, atol=1e-2)
    st = engine.stats()
    assert st["active_fraction"] == 1.0 and all(st[k] >= 0 for k in ("upload_ms", "infer_ms", "download_ms"))
    # No state: one address set, enqueued once, then captured as a CUDA graph and replayed.
    assert "cuda_graph_error" not in st and st["cuda_graphs"] == 1 and st["graph_replays"] == 2
    with pytest.raises(PassrtError, match="built for 24x32 frames .* --input-size 48x64"):
        engine(torch.rand(1, 3, 48, 64))


@pytest.mark.tensorrt
def test_sparse_engine_matches_reference_runner(tmp_path, trt_gpu, capsys):
    import cv2

    from passrt.export import ExportedStream
    from passrt.export.onnx_export import export_model
    from passrt.models.ssdlite import preprocess

    try:
        plugin = tb.resolve_plugin()
    except PassrtError as e:
        skip_or_fail(str(e))
    if not assets.is_cached("ssdlite-pedestrian"):  # a GPU machine may have no registry: never download here
        skip_or_fail(f"the ssdlite-pedestrian model is not in {assets.cache_dir()} (fetch it where a registry is "
                     "reachable: `passrt assets fetch`, then copy the cache or set PASSRT_CACHE)")
    onnx_path = tmp_path / "rd.onnx"
    export_model("ssdlite-pedestrian", "regiondrop", {}, (144, 192), onnx_path)
    tb.build_engine(onnx_path, tmp_path / "rd.engine", plugin=plugin, progress=False)
    engine = tb.TensorRTBackend(tmp_path / "rd.engine")
    assert engine.sparse and engine.model_name == "ssdlite-pedestrian" and engine.policy["name"] == "regiondrop"
    reference = ExportedStream(onnx_path)

    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (144, 192, 3), dtype=np.uint8)
    frames = []
    for i in range(6):  # a still background and a moving square
        f = background.copy()
        f[20:44, 10 + 12 * i:34 + 12 * i] = 255
        frames.append(f)
    tensors = [preprocess(f) for f in frames]
    eager = tb.TensorRTBackend(tmp_path / "rd.engine", cuda_graphs=False)
    for i, x in enumerate(tensors):
        got, want, ungraphed = engine(x), reference(x), eager(x)
        for g, w, u in zip(got, want, ungraphed):
            torch.testing.assert_close(g, w, rtol=1e-3, atol=1e-3)
            torch.testing.assert_close(g, u, rtol=1e-5, atol=1e-5)  # a replayed graph = the same enqueue
        assert engine.stats()["active_fraction"] == pytest.approx(reference.last_active_fraction, abs=1e-5)
        if i == 0:
            assert engine.stats()["active_fraction"] == pytest.approx(1.0)
    assert engine.stats()["active_fraction"] < 1.0
    # The state buffers swap every frame: two address sets, each enqueued once, then captured and replayed.
    st = engine.stats()
    assert "cuda_graph_error" not in st and st["cuda_graphs"] == 2 and st["graph_replays"] == len(tensors) - 2
    assert eager.stats()["cuda_graphs"] == 0 and eager.stats()["graph_replays"] == 0
    engine.reset()  # in place: the graphs stay valid
    engine(tensors[-1])
    assert engine.stats()["active_fraction"] == pytest.approx(1.0)
    assert engine.stats()["graph_replays"] == len(tensors) - 1

    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (192, 144))
    for f in frames:
        writer.write(f)
    writer.release()
    capsys.readouterr()
    assert main(["run", "--engine", str(tmp_path / "rd.engine"), "--input", str(clip), "--headless",
                 "--json", str(tmp_path / "run.json")]) == 0
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["frames"] == 6 and summary["policy"] == "regiondrop (TensorRT)"
    assert summary["engine"]["backend"] == "tensorrt" and 0 < summary["active_fraction_mean"] < 1


@pytest.mark.parametrize("fp16", [False, True], ids=["fp32", "fp16"])
def test_channel_last_state_for_the_tile_kernels_caches(fp16):
    """State I/O of every plugin layer (the NHWC tile kernels run groups-1, depthwise and grouped convs) gets
    their format: fp32 HWC, fp16 HALF + HWC8, a 12-channel cache included (padded rows); the image stays."""
    def plugin(name, cache, out, weight, group):
        return helper.make_node(contract.PLUGIN_NAME, ["x", "mask", cache, weight, "bias"], [out], name=name,
                                domain=contract.DOMAIN, group=group)

    inits = [numpy_helper.from_array(np.zeros(s, np.float32), n) for n, s in
             [("w_gemm", (8, 4, 3, 3)), ("w_dw", (12, 1, 3, 3)), ("w_grouped", (8, 2, 3, 3))]]
    graph = helper.make_graph([plugin("a", "state.a", "state_out.a", "w_gemm", 1),
                               plugin("b", "state.b", "state_out.b", "w_dw", 12),
                               plugin("c", "state.c", "state_out.c", "w_grouped", 2)], "g", [], [], inits)
    model = helper.make_model(graph)
    shapes = {"image": (1, 3, 16, 16), "state.a": (1, 8, 8, 8), "state.b": (1, 12, 8, 8), "state.c": (1, 8, 8, 8),
              "state_out.a": (1, 8, 8, 8), "state_out.b": (1, 12, 8, 8), "state_out.c": (1, 8, 8, 8)}
    tensors = {n: types.SimpleNamespace(name=n, shape=s) for n, s in shapes.items()}
    ins = [tensors[n] for n in ("image", "state.a", "state.b", "state.c")]
    outs = [tensors[n] for n in ("state_out.a", "state_out.b", "state_out.c")]
    network = types.SimpleNamespace(num_inputs=len(ins), num_outputs=len(outs), get_input=ins.__getitem__,
                                    get_output=outs.__getitem__)
    trt = types.SimpleNamespace(TensorFormat=types.SimpleNamespace(HWC8=2, HWC=8),
                                DataType=types.SimpleNamespace(HALF="HALF"))
    changed = tbuild.channel_last_state(trt, network, model, fp16)
    states = [n for n in shapes if n != "image"]
    assert sorted(changed) == sorted(states)
    assert not hasattr(tensors["image"], "allowed_formats") and not hasattr(tensors["image"], "dtype")
    for n in states:
        assert tensors[n].allowed_formats == 1 << (2 if fp16 else 8), n
        assert getattr(tensors[n], "dtype", None) == ("HALF" if fp16 else None), n


@pytest.mark.parametrize("api", ["v3", "bindings"])
def test_state_buffers_have_the_padded_size_of_vectorized_formats(api):
    """An fp16 HWC8 cache of 12 channels is stored as 16 per cell: the runner's buffer must be that large
    (TensorRT 8.5+/10 get_tensor_*, 8.0-8.4 get_binding_*); linear tensors keep their shape."""
    names = ["image", "state.a", "state.b"]
    shapes = {"image": (1, 3, 16, 16), "state.a": (1, 12, 8, 8), "state.b": (1, 16, 8, 8)}
    vec = {"image": (-1, 1), "state.a": (1, 8), "state.b": (1, 8)}  # (vectorized dim, components)
    trt = types.SimpleNamespace(TensorIOMode=types.SimpleNamespace(INPUT="in"))
    dtype = types.SimpleNamespace(name="HALF")
    if api == "v3":
        engine = types.SimpleNamespace(
            num_io_tensors=3, get_tensor_name=names.__getitem__, get_tensor_mode=lambda n: "in",
            get_tensor_shape=shapes.__getitem__, get_tensor_dtype=lambda n: dtype,
            get_tensor_vectorized_dim=lambda n: vec[n][0], get_tensor_components_per_element=lambda n: vec[n][1])
    else:
        engine = types.SimpleNamespace(
            num_bindings=3, get_binding_name=names.__getitem__, binding_is_input=lambda i: True,
            get_binding_shape=lambda i: shapes[names[i]], get_binding_dtype=lambda i: dtype,
            get_binding_vectorized_dim=lambda i: vec[names[i]][0],
            get_binding_components_per_element=lambda i: vec[names[i]][1])
    infos = {t.name: t for t in tb.io_tensors(trt, engine)}
    assert infos["state.a"].shape == (1, 12, 8, 8) and infos["state.a"].storage == (1, 16, 8, 8)
    assert infos["state.b"].storage == (1, 16, 8, 8) and infos["image"].storage == (1, 3, 16, 16)
