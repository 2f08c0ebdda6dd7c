"""`passrt export --triton`: the config maps the graph's state I/O onto Triton's implicit state,
checked by parsing it with Triton's own model-config schema (tritonclient)."""

import py_compile
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

import tritonclient  # noqa: E402,F401  (`make install` installs the triton extra: missing is a failure)

from passrt.contract import GraphIO  # noqa: E402
from passrt.errors import PassrtError  # noqa: E402
from passrt.export.onnx_export import export_model  # noqa: E402
from passrt.export.triton import parse_config, triton_config, write_repository  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    directory = tmp_path_factory.mktemp("triton")
    onnx_path = directory / "regiondrop.onnx"
    export_model("ssdlite-pedestrian", "regiondrop", {}, (64, 96), onnx_path)
    return write_repository(onnx_path, directory / "repo", "cams"), onnx_path


def shapes(values):
    return {v.name: tuple(d.dim_value for d in v.type.tensor_type.shape.dim) for v in values}


def test_every_state_pair_is_implicit_state_and_refresh_is_sequence_start(repository):
    model_dir, onnx_path = repository
    assert (model_dir / "model.onnx").is_file() and (model_dir / "1").is_dir()
    config = parse_config((model_dir / "config.pbtxt").read_text())
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    ins, outs = shapes(graph.input), shapes(graph.output)
    io = GraphIO(ins, outs)
    assert len(io.states) > 50  # every layer's cache, and the input reference
    assert config.name == "cams" and config.platform == "tensorrt_plan" and config.max_batch_size == 0
    # Only the image is an ordinary input: state and controls are fed by the server.
    assert [i.name for i in config.input] == ["image"] and list(config.input[0].dims) == list(ins["image"])
    assert [o.name for o in config.output] == io.outputs + ["active_fraction"]
    seq = config.sequence_batching
    states = {s.input_name: s for s in seq.state}
    assert set(states) == {i for i, _ in io.states}
    for name_in, name_out in io.states:
        s = states[name_in]
        assert s.output_name == name_out and tuple(s.dims) == ins[name_in] == outs[name_out]
        assert s.data_type == config.input[0].data_type  # FP32, like the graph
        assert s.initial_state[0].zero_data and tuple(s.initial_state[0].dims) == ins[name_in]
    (control,) = seq.control_input
    assert control.name == "refresh" and list(control.control[0].fp32_false_true) == [0.0, 1.0]
    assert control.control[0].kind == 0  # CONTROL_SEQUENCE_START


def test_a_dense_graph_has_no_sequence_batching(tmp_path):
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 8, 8])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["image"], ["y"])], "g", [x], [y]))
    onnx.save(model, tmp_path / "dense.onnx")
    config = parse_config(triton_config(tmp_path / "dense.onnx", "dense"))
    assert not config.HasField("sequence_batching") and [o.name for o in config.output] == ["y"]


def test_schema_rejects_what_triton_would():
    with pytest.raises(PassrtError, match="Triton's schema"):
        parse_config('name: "x"\nsequence_batching { stat [ ] }\n')


def test_client_example_compiles():
    py_compile.compile(str(ROOT / "export" / "triton_client.py"), doraise=True)
