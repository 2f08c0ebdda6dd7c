"""PASS gates export as standard ONNX ops in front of the PassSparseConv2d nodes, and the graph,
run by the reference runner, equals the PyTorch engine with the same gates on real frames."""

import onnx
import pytest
import torch

import passrt
from passrt import contract
from passrt.export import ExportedStream, export_model
from passrt.runtime.frames import read_frames
from passrt.policies.gate import GateConfig
from passrt.policies.gateset import GateSet
from passrt.training.train import TILES, plan_steps
from passrt.models import load_model
from tests.export.streams import assert_stream_matches_engine

SIZE = (144, 192)


@pytest.fixture(scope="module")
def gates_file(tmp_path_factory):
    spec = load_model("ssdlite-pedestrian")
    torch.manual_seed(3)  # untrained gates: their decisions are mixed, which is what this test needs
    example = read_frames("vtest", 1, SIZE, preprocess=spec.preprocess).frames[0]
    gates = GateSet.for_steps(spec.name, plan_steps(spec.module, example), GateConfig(), TILES)
    path = tmp_path_factory.mktemp("gates") / "gates.pt"
    gates.save(path)
    return path


@pytest.mark.parametrize("params", [{}, {"margin": 1, "compare": "previous"}])
def test_pass_export_matches_engine_on_real_frames(gates_file, tmp_path, params):
    params = {"gates": str(gates_file), **params}
    summary = export_model("ssdlite-pedestrian", "pass", params, SIZE, tmp_path / "pass.onnx")
    model = onnx.load(str(summary.path))
    onnx.checker.check_model(model)
    custom = [n for n in model.graph.node if n.domain not in ("", "ai.onnx")]
    assert custom and all(n.op_type == contract.PLUGIN_NAME for n in custom)  # gates: standard ops only
    inputs = [i.name for i in model.graph.input]
    gated = passrt.PassGates.load(gates_file).net.labels()
    assert [f"{contract.STATE_IN}gate_ref.{label}" for label in gated] == inputs[2:2 + len(gated)]

    spec = load_model("ssdlite-pedestrian")
    engine = passrt.sparsify(spec.module, passrt.PassGates(**params))
    frames = read_frames("vtest", 8, SIZE, preprocess=spec.preprocess).frames
    assert assert_stream_matches_engine(engine, ExportedStream(summary.path), frames) >= 5


@pytest.fixture(scope="module")
def common_gates_file(tmp_path_factory):
    """A common-design gate warm-started on vtest (its decisions follow the motion: mixed masks)."""
    from passrt.policies.common_gate import CommonGate, CommonGateConfig
    from passrt.training.common import replay_rule, warm_start

    spec = load_model("ssdlite-pedestrian")
    torch.manual_seed(0)
    clip = read_frames("vtest", 24, SIZE, preprocess=spec.preprocess).frames
    gate = CommonGate(CommonGateConfig(), spec.name, TILES)
    samples = [{"features": gate.features(clip[r["index"]], r["ref"], r["tau"]), "changed": r["changed"]}
               for r in replay_rule(clip, gate.config)]
    warm_start(gate, samples, 100, 1e-2, torch.Generator().manual_seed(0), progress=False)
    path = tmp_path_factory.mktemp("common") / "gate.pt"
    gate.save(path)
    return path


def test_common_design_export_matches_engine_on_real_frames(common_gates_file, tmp_path):
    params = {"gates": str(common_gates_file)}
    summary = export_model("ssdlite-pedestrian", "pass", params, SIZE, tmp_path / "common.onnx")
    model = onnx.load(str(summary.path))
    onnx.checker.check_model(model)
    custom = [n for n in model.graph.node if n.domain not in ("", "ai.onnx")]
    assert custom and all(n.op_type == contract.PLUGIN_NAME for n in custom)  # the gate: standard ops only
    spec = load_model("ssdlite-pedestrian")
    engine = passrt.sparsify(spec.module, passrt.PassGates(**params))
    assert engine.policy.design == "common"
    frames = read_frames("vtest", 30, SIZE, preprocess=spec.preprocess).frames
    assert assert_stream_matches_engine(engine, ExportedStream(summary.path), frames) >= 10
