"""``passrt export``: a model, a policy and an input size -> an ONNX file.

``dense`` writes the model itself (input ``image``). Any other policy writes the sparse
program (:mod:`passrt.engine.program`) with the state as explicit I/O
(:mod:`passrt.contract`). Both get passrt's metadata and pass ``onnx.checker``.
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from passrt.errors import PassrtError
from passrt import contract


def check_output(out: Path) -> None:
    """Fail before any work on what the user can fix. (Every policy exports: their masks are standard ONNX
    ops of the frame and the state.)"""
    if not out.parent.is_dir():
        raise PassrtError(f"cannot write {out}: directory {out.parent} does not exist")


@dataclass
class ExportSummary:
    path: Path
    format: str  # "dense" or "sparse"
    nodes: int
    plugin_nodes: int = 0
    plugin_layers: list = field(default_factory=list)
    fallback_layers: list = field(default_factory=list)
    state_inputs: int = 0


def export_model(model_name: str, policy: str, params: dict, input_size: tuple[int, int], out: Path | str,
                 opset: int = 17) -> ExportSummary:
    """Export ``model_name`` under ``policy`` for (H, W) frames to ``out``."""
    from passrt.engine import SparseModel
    from passrt.engine.program import SparseProgram
    from passrt.models import load_model
    from passrt.policies import make_policy

    out = Path(out)
    check_output(out)
    spec = load_model(model_name)
    h, w = input_size
    if h % spec.input_multiple or w % spec.input_multiple:
        raise PassrtError(f"{model_name} needs an input size that is a multiple of {spec.input_multiple}, got {h}x{w}")
    pol = make_policy(policy, **params)
    example = torch.zeros(1, 3, h, w)
    meta = {contract.META_MODEL: model_name, contract.META_INPUT_SIZE: f"{h}x{w}",
            contract.META_POLICY: json.dumps(pol.describe())}
    if pol.name == "dense":
        model = export_dense(spec.module, example, out, meta, opset)
        return ExportSummary(out, "dense", len(model.graph.node))
    engine = SparseModel(spec.module, pol)
    engine(example)  # plans the model for this input size
    program = SparseProgram(engine.plan, engine.policy).eval()
    states = program.initial_states()
    with torch.no_grad():
        n_out = len(program(example, torch.ones(1), *states)) - 1 - len(states)  # outputs, active, states
    inputs = [contract.IMAGE, contract.REFRESH] + [contract.STATE_IN + k for k in program.state_keys]
    outputs = ([f"{contract.OUTPUT}{i}" for i in range(n_out)] + [contract.ACTIVE_FRACTION]
               + [contract.STATE_OUT + k for k in program.state_keys])
    model = _export(program, (example, torch.ones(1), *states), inputs, outputs, opset,
                    {**meta, contract.META_FORMAT: "sparse"}, custom_opsets={contract.DOMAIN: 1})
    _save(model, out)
    plugin = sum(1 for n in model.graph.node if n.op_type == contract.PLUGIN_NAME)
    return ExportSummary(out, "sparse", len(model.graph.node), plugin, program.plugin_layers,
                         program.fallback_layers, len(states))


def export_dense(module: nn.Module, example: torch.Tensor, out: Path, meta: dict | None = None, opset: int = 17):
    """The model as it is (input ``image``), written to ``out``; returns the ONNX model."""
    model = _export(module.eval(), (example,), [contract.IMAGE], None, opset,
                    {**(meta or {}), contract.META_FORMAT: "dense"})
    _save(model, out)
    return model


def _export(module, args, input_names, output_names, opset, meta, custom_opsets=None):
    import onnx

    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter is chatty (tracer warnings, constant folding)
        torch.onnx.export(module, args, buf, dynamo=False, opset_version=opset, input_names=input_names,
                          output_names=output_names, do_constant_folding=True, custom_opsets=custom_opsets)
    model = onnx.load_from_string(buf.getvalue())
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:  # a bug of ours, not the user's: keep the details
        raise RuntimeError(f"the exported graph fails onnx.checker: {e}") from e
    return model


def _save(model, out: Path) -> None:
    import onnx

    tmp = out.with_name(out.name + ".tmp")
    onnx.save(model, str(tmp))
    tmp.replace(out)


def metadata(model) -> dict:
    """passrt's metadata_props of an ONNX model (a ModelProto)."""
    return {p.key: p.value for p in model.metadata_props}
