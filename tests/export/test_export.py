"""ONNX export: the graph passes onnx.checker, follows the plugin contract, and, run by the
reference runner (onnx.reference + the node's PyTorch reference), equals the PyTorch engine
frame after frame (ISSUE 3: 'export + reference run match the engine')."""

import operator

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

import passrt
from passrt.plan.steps import Pointwise, Ref
from passrt import contract
from passrt.export import ExportedStream, export_model
from passrt.engine.node import NodeAttributes, pass_sparse_conv2d
from passrt.export.onnx_export import _export, _save
from passrt.engine.program import SparseProgram
from passrt.plan.epilogue import kernel_affine, kernel_epilogue
from passrt.runtime.frames import read_frames
from passrt.kernels import sparse_conv2d
from passrt.kernels.tables import tile_grid
from passrt.models import load_model
from tests.engine.random_nets import RandomNet, _init, networks
from tests.engine.test_exact_equals_dense import change_sequence
from tests.export.streams import assert_stream_matches_engine

SIZE = (288, 384)  # real vtest frames, downscaled so the reference runner takes ~0.25 s a frame


@pytest.fixture(scope="module")
def ssdlite_export(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "ssdlite-regiondrop.onnx"
    summary = export_model("ssdlite-pedestrian", "regiondrop", {}, SIZE, path)
    return path, summary


def test_ssdlite_graph_is_valid_and_follows_the_contract(ssdlite_export):
    path, summary = ssdlite_export
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert {o.domain: o.version for o in model.opset_import}.get(contract.DOMAIN) == 1
    nodes = [n for n in model.graph.node if n.op_type == contract.PLUGIN_NAME]
    assert len(nodes) == 88 == summary.plugin_nodes  # every conv of SSDLite, none left dense
    assert summary.fallback_layers == []
    initializers = {i.name for i in model.graph.initializer}
    for n in nodes:
        assert n.domain == contract.DOMAIN
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        assert set(attrs) == set(contract.ATTRIBUTES) | {"plugin_version", "plugin_namespace"}
        assert attrs["plugin_version"] == b"1" and attrs["plugin_namespace"] == b"passrt"
        assert len(attrs["pads"]) == 4 and attrs["tile"] >= 1
        assert len(n.input) in (5, 6) and n.input[3] in initializers and n.input[4] in initializers
    # Weights are named initializers and nothing else big is stored (no dense zero caches).
    weights = sum(np.prod(i.dims) * 4 for i in model.graph.initializer)
    assert path.stat().st_size < 1.1 * weights


def test_ssdlite_state_io_pairs_up(ssdlite_export):
    model = onnx.load(str(ssdlite_export[0]))
    shape = lambda v: [d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    ins = {i.name: shape(i) for i in model.graph.input}
    outs = {o.name: shape(o) for o in model.graph.output}
    assert ins[contract.IMAGE] == [1, 3, *SIZE] and ins[contract.REFRESH] == [1]
    states = [k for k in ins if k.startswith(contract.STATE_IN)]
    assert len(states) == len(ins) - 2 == ssdlite_export[1].state_inputs
    for k in states:
        assert outs[contract.STATE_OUT + k[len(contract.STATE_IN):]] == ins[k]
    assert outs[contract.ACTIVE_FRACTION] == [1]
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta[contract.META_MODEL] == "ssdlite-pedestrian" and meta[contract.META_INPUT_SIZE] == "288x384"
    assert meta[contract.META_FORMAT] == "sparse"


def test_ssdlite_reference_run_matches_engine_on_real_frames(ssdlite_export):
    spec = load_model("ssdlite-pedestrian")
    frames = read_frames("vtest", 12, SIZE, preprocess=spec.preprocess).frames
    engine = passrt.sparsify(spec.module, "regiondrop")
    stream = ExportedStream(ssdlite_export[0])
    assert assert_stream_matches_engine(engine, stream, frames) >= 8  # really sparse frames, not all refreshes


def test_dense_export_runs_like_the_model(tmp_path):
    spec = load_model("ssdlite-pedestrian")
    summary = export_model("ssdlite-pedestrian", "dense", {}, SIZE, tmp_path / "dense.onnx")
    model = onnx.load(str(summary.path))
    assert [i.name for i in model.graph.input] == [contract.IMAGE]
    assert not any(n.op_type == contract.PLUGIN_NAME for n in model.graph.node)
    x = read_frames("vtest", 1, SIZE, preprocess=spec.preprocess).frames[0]
    with torch.no_grad():
        expected = spec.module(x)
    for a, b in zip(expected, ExportedStream(summary.path)(x)):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-4)


# ---- small random networks: every step kind, epilogues the plugin cannot express ------------

def _regiondrop(**kw):
    return passrt.RegionDrop(threshold=0.05, block=4, min_pixels=1, tile_px=8, crossover=0.7, **kw)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(net=networks(), h=st.integers(16, 40), w=st.integers(16, 40), seed=st.integers(0, 1000),
       margin=st.sampled_from([0, 1]))
def test_program_equals_engine_on_random_networks(net, h, w, seed, margin):
    frames = change_sequence(h, w, 6, torch.Generator().manual_seed(seed))
    engine = passrt.sparsify(net, _regiondrop(margin=margin))
    engine(frames[0])
    program = SparseProgram(engine.plan, engine.policy)
    reference = passrt.sparsify(net, _regiondrop(margin=margin))
    states = program.initial_states()
    with torch.no_grad():
        for i, x in enumerate(frames):
            expected = reference(x)
            result = program(x, torch.tensor([float(i == 0)]), *states)
            (*outs, active), states = result[:-len(states)], list(result[-len(states):])
            torch.testing.assert_close(outs[0], expected, rtol=1e-4, atol=1e-4)
            assert float(active) == pytest.approx(reference.stats()["active_fraction"], abs=1e-5)


@pytest.mark.parametrize("seed", [1, 7])
def test_random_network_export_matches_engine(tmp_path, seed):
    torch.manual_seed(seed)
    spec = [("conv", dict(cout=6, k=3, s=2, d=1, dw=False, same=True, act=1, bn=True)),
            ("res", dict(act=3, mul=seed == 7)),  # x * sigmoid(y): an epilogue the plugin cannot express
            ("branch", dict(pool="max", up="bilinear")),
            ("conv", dict(cout=6, k=3, s=1, d=2, dw=True, same=False, act=6, bn=False)),
            ("pool", dict(pool="avg"))]
    net = _init(RandomNet(spec))
    frames = change_sequence(32, 40, 6, torch.Generator().manual_seed(seed))
    engine = passrt.sparsify(net, _regiondrop())
    engine(frames[0])
    program = SparseProgram(engine.plan, engine.policy)
    states = program.initial_states()
    names = ([contract.IMAGE, contract.REFRESH] + [contract.STATE_IN + k for k in program.state_keys],
             ["output.0", contract.ACTIVE_FRACTION] + [contract.STATE_OUT + k for k in program.state_keys])
    model = _export(program, (frames[0], torch.ones(1), *states), *names, 17, {}, {contract.DOMAIN: 1})
    _save(model, tmp_path / "net.onnx")
    assert (seed == 7) == bool(program.fallback_layers)
    reference, stream = passrt.sparsify(net, _regiondrop()), ExportedStream(tmp_path / "net.onnx")
    for x in frames:
        torch.testing.assert_close(stream(x)[0], reference(x), rtol=1e-4, atol=1e-4)


# ---- the node's reference against the kernels' reference ------------------------------------

@pytest.mark.parametrize("k,s,d,groups,pads,tile,act,post,residual", [
    (3, 1, 1, 1, (1, 1, 1, 1), 4, 2, 0, False),
    (3, 2, 1, 8, (0, 0, 1, 1), 2, 1, 0, False),  # depthwise, TF-SAME (pad after)
    (5, 1, 2, 1, (4, 4, 4, 4), 3, 0, 0, True),
    (1, 1, 1, 2, (0, 0, 0, 0), 4, 6, 1, True),  # grouped 1x1, leaky relu, residual, post relu
    (3, 3, 1, 1, (2, 1, 0, 1), 1, 3, 0, False),  # asymmetric pads, stride 3
])
def test_node_reference_equals_kernel_reference(k, s, d, groups, pads, tile, act, post, residual):
    gen = torch.Generator().manual_seed(k * 7 + s)
    x = torch.randn(1, 8, 17, 19, generator=gen)
    weight = torch.randn(8, 8 // groups, k, k, generator=gen)
    bias = torch.randn(8, generator=gen)
    attrs = NodeAttributes((k, k), (s, s), (d, d), pads, groups, tile, act, 0.2, post)
    top, left, bottom, right = pads
    ho = (17 + top + bottom - d * (k - 1) - 1) // s + 1
    wo = (19 + left + right - d * (k - 1) - 1) // s + 1
    cache = torch.randn(1, 8, ho, wo, generator=gen)
    mask = (torch.rand(1, 1, *tile_grid(ho, wo, tile), generator=gen) > 0.5).float()
    mask[..., -1, -1] = 1.0  # an edge tile
    res = torch.randn(1, 8, ho, wo, generator=gen) if residual else None
    got = pass_sparse_conv2d(x, mask, cache, weight, bias, res, attrs)
    act_fn = {0: None, 1: F.relu, 2: F.relu6, 3: F.hardswish, 6: lambda t: F.leaky_relu(t, 0.2)}[act]
    expected = sparse_conv2d(x, weight, bias, cache.clone(), mask[0, 0] > 0, stride=s, padding=(top, bottom, left, right),
                             dilation=d, groups=groups, tile=tile, activation=act_fn, residual=res)
    if post:
        active = F.interpolate(mask, scale_factor=tile)[..., :ho, :wo] > 0
        expected = torch.where(active, F.relu(expected), cache)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_kernel_epilogue_patterns():
    me, other = Ref("c"), Ref("r")
    relu6, add = Pointwise(nn.ReLU6(), [me], {}), Pointwise(operator.add, [other, me], {})
    assert kernel_epilogue([], "c") == (0, 0.01, None, 0)
    assert kernel_epilogue([relu6], "c") == (2, 0.01, None, 0)
    assert kernel_epilogue([relu6, add], "c") == (2, 0.01, "r", 0)
    assert kernel_epilogue([add, Pointwise(F.relu, [me], {"inplace": True})], "c") == (0, 0.01, "r", 1)
    assert kernel_epilogue([Pointwise(F.leaky_relu, [me, 0.2], {})], "c") == (6, 0.2, None, 0)
    assert kernel_epilogue([Pointwise(torch.tanh, [me], {})], "c") is None  # no tanh in the plugin
    assert kernel_epilogue([add, add], "c") is None
    assert kernel_epilogue([Pointwise(operator.mul, [me, other], {})], "c") is None


def test_kernel_affine_patterns():
    x, other = Ref("x"), Ref("o")
    per_channel = torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)

    def affine(fn, args):
        found = kernel_affine(Pointwise(fn, args, {}), 3)
        return None if found is None else (found[0], found[1].tolist(), found[2].tolist())

    assert affine(operator.mul, [x, 2]) == ("x", [2.0] * 3, [0.0] * 3)
    assert affine(torch.mul, [0.5, x]) == ("x", [0.5] * 3, [0.0] * 3)
    assert affine(operator.sub, [x, 1]) == ("x", [1.0] * 3, [-1.0] * 3)
    assert affine(operator.sub, [1, x]) == ("x", [-1.0] * 3, [1.0] * 3)
    assert affine(operator.add, [per_channel, x]) == ("x", [1.0] * 3, [1.0, 2.0, 3.0])
    assert affine(operator.add, [x, other]) is None  # two values: a residual, not an affine map
    assert affine(operator.mul, [Ref("x", broadcast=True), 2]) is None
    assert affine(operator.truediv, [x, 2]) is None  # x / 2 and x * 0.5 may round differently
    assert affine(operator.mul, [x, torch.ones(1, 4, 1, 1)]) is None  # not this step's channels
    assert affine(operator.mul, [x, torch.ones(1, 3, 2, 1)]) is None  # not per channel
    assert affine(operator.mul, [x, True]) is None


@pytest.mark.parametrize("policy,params", [("exact", {"threshold": "auto"}), ("layerwise", {})])
def test_exact_and_layerwise_export_and_run_like_the_engine(policy, params, tmp_path):
    """Their rules (ExactMasks, LayerWiseMasks: the frame's change through every receptive field; the per-layer
    tests with their references as states) export as standard ops, and the graph decides the engine's tiles."""
    path = tmp_path / f"{policy}.onnx"
    summary = export_model("ssdlite-pedestrian", policy, params, SIZE, path)
    assert summary.plugin_nodes == 88 and summary.fallback_layers == []
    onnx.checker.check_model(onnx.load(str(path)))
    spec = load_model("ssdlite-pedestrian")
    frames = read_frames("vtest", 5, SIZE, preprocess=spec.preprocess).frames
    engine = passrt.sparsify(spec.module, policy, executor="reference", **params)
    assert assert_stream_matches_engine(engine, ExportedStream(path), frames) >= 3
