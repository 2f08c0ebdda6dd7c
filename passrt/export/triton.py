"""A model repository for NVIDIA Triton Inference Server's sequence batcher with implicit state.

An exported sparse graph is stateful by contract (:mod:`passrt.contract`): ``state.<key>`` in,
``state_out.<key>`` out, and ``refresh`` = 1 on a stream's first frame. Triton's implicit state
management keeps exactly such pairs per sequence on the server, so each camera becomes one
sequence (its own caches) and one deployment serves more cameras than one process holds:

- every ``state.<key>``/``state_out.<key>`` pair becomes a ``sequence_batching.state`` entry,
  starting from zeros;
- ``refresh`` becomes the CONTROL_SEQUENCE_START control (1.0 on a sequence's first request,
  0.0 after): the first frame of every camera runs dense, as in passrt;
- the image is the one ordinary input; ``output.<i>`` and ``active_fraction`` the outputs.

The graph has no READY input: every request of a sequence carries a frame, so none is mapped.
It keeps batch size 1 (``max_batch_size: 0``, full shapes): batching sequences would need a
batch dimension in the exported graph. Layout written::

    DIR/NAME/config.pbtxt
    DIR/NAME/model.onnx        the graph; build the engine from it on the GPU (passrt build)
    DIR/NAME/1/                model.plan goes here (TensorRT + passrt's plugin)

Validated here by parsing with Triton's own ``ModelConfig`` protobuf schema (``tritonclient``);
no Triton server runs on these machines, so serving has not been tried.
"""

from __future__ import annotations

from pathlib import Path

from passrt.contract import GraphIO
from passrt.errors import PassrtError

# ONNX TensorProto element types -> Triton's DataType names
_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 11: "TYPE_FP64", 6: "TYPE_INT32", 7: "TYPE_INT64", 9: "TYPE_BOOL",
          2: "TYPE_UINT8", 3: "TYPE_INT8"}
IDLE_US = 60_000_000  # a camera silent for a minute loses its slot (and its caches)


def triton_config(onnx_path: Path | str, name: str, instances: int = 1) -> str:
    """config.pbtxt for the graph at ``onnx_path`` (see the module docstring)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    inits = {i.name for i in graph.initializer}
    ins = {v.name: v for v in graph.input if v.name not in inits}
    outs = {v.name: v for v in graph.output}
    io = GraphIO({n: _dims(v) for n, v in ins.items()}, {n: _dims(v) for n, v in outs.items()},
                 [v.name for v in graph.output])

    def tensor(v):
        return (f"  {{\n    name: \"{v.name}\"\n    data_type: {_dtype(v)}\n    dims: {list(_dims(v))}\n  }}")

    lines = [f'name: "{name}"', 'platform: "tensorrt_plan"', 'default_model_filename: "model.plan"',
             "max_batch_size: 0",
             "input [\n" + ",\n".join([tensor(ins[io.image])]) + "\n]"]
    shown = io.outputs + ([io.active] if io.active else [])
    lines.append("output [\n" + ",\n".join(tensor(outs[n]) for n in shown) + "\n]")
    if io.sparse:
        seq = [f"  max_sequence_idle_microseconds: {IDLE_US}"]
        if io.refresh:
            seq.append(f'  control_input [\n    {{\n      name: "{io.refresh}"\n      control [\n        {{\n'
                       "          kind: CONTROL_SEQUENCE_START\n          fp32_false_true: [ 0, 1 ]\n"
                       "        }\n      ]\n    }\n  ]")
        states = []
        for name_in, name_out in io.states:
            v = ins[name_in]
            states.append(f'    {{\n      input_name: "{name_in}"\n      output_name: "{name_out}"\n'
                          f"      data_type: {_dtype(v)}\n      dims: {list(_dims(v))}\n"
                          f"      initial_state: {{\n        name: \"zeros\"\n        data_type: {_dtype(v)}\n"
                          f"        dims: {list(_dims(v))}\n        zero_data: true\n      }}\n    }}")
        seq.append("  state [\n" + ",\n".join(states) + "\n  ]")
        lines.append("sequence_batching {\n" + "\n".join(seq) + "\n}")
    lines.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_GPU\n  }}\n]")
    return "\n".join(lines) + "\n"


def write_repository(onnx_path: Path | str, directory: Path | str, name: str, instances: int = 1) -> Path:
    """Write DIR/NAME/{config.pbtxt, model.onnx, 1/}; returns the model's directory."""
    import shutil

    model_dir = Path(directory) / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    config = triton_config(onnx_path, name, instances)
    parse_config(config)  # never write a config Triton's schema rejects
    if Path(onnx_path).resolve() != (model_dir / "model.onnx").resolve():
        shutil.copyfile(onnx_path, model_dir / "model.onnx")
    (model_dir / "config.pbtxt").write_text(config)
    return model_dir


def parse_config(text: str):
    """``text`` parsed with Triton's ModelConfig schema (``tritonclient``'s model_config_pb2); raises
    PassrtError naming the line Triton would reject."""
    from google.protobuf import text_format

    schema = model_config_schema()
    try:
        return text_format.Parse(text, schema.ModelConfig())
    except text_format.ParseError as e:
        raise PassrtError(f"config.pbtxt does not parse with Triton's schema: {e}") from None


def model_config_schema():
    """``tritonclient/grpc/model_config_pb2.py`` loaded by path: the package's ``grpc/__init__`` refuses to
    import without grpcio, which reading the schema does not need."""
    import importlib.util
    import os

    try:
        import tritonclient
    except ImportError:
        raise PassrtError("--triton needs tritonclient (its model-config schema checks the config): "
                          "pip install 'passrt[triton]'") from None
    path = os.path.join(os.path.dirname(tritonclient.__file__), "grpc", "model_config_pb2.py")
    spec = importlib.util.spec_from_file_location("passrt_triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dims(v) -> tuple:
    dims = v.type.tensor_type.shape.dim
    if any(not d.HasField("dim_value") for d in dims):
        raise PassrtError(f"{v.name} has a dynamic dimension; Triton's state needs fixed shapes")
    return tuple(int(d.dim_value) for d in dims)


def _dtype(v) -> str:
    t = v.type.tensor_type.elem_type
    if t not in _TYPES:
        raise PassrtError(f"{v.name}: ONNX element type {t} has no Triton data type here")
    return _TYPES[t]


__all__ = ["parse_config", "triton_config", "write_repository"]
