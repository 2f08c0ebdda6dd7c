"""The common-mask PASS design: the gate (shapes, gradients, MACs), the warm start against RegionDrop
on a real clip, the training positive against the engine, all-keep = dense, and the CLI end to end."""

import pytest
import torch
import torch.nn.functional as F

import passrt
from passrt.errors import PassrtError
from passrt.models import load_model
from passrt.plan import masks
from passrt.policies import PassGates
from passrt.policies.common_gate import FEATURES, CommonGate, CommonGateConfig, block_features
from passrt.runtime.frames import read_frames
from passrt.training.common import replay_rule, warm_start, iou
from passrt.training.reuse import ReuseRunner
from passrt.training.train import TILES, plan_steps

SIZE = (288, 384)  # half of vtest's 576x768: a real clip, CI-sized


@pytest.fixture(scope="module")
def ssd():
    spec = load_model("ssdlite-pedestrian")
    return spec.module.eval().requires_grad_(False), spec.preprocess


@pytest.fixture(scope="module")
def clip(ssd):
    frames = read_frames("vtest", 40, SIZE, 300, 340).frames
    return [ssd[1](f) for f in frames]


@pytest.fixture(scope="module")
def warm_gate(clip):
    """A gate warm-started on frames 300-339 of vtest, and the samples it was fitted on."""
    torch.manual_seed(0)
    gate = CommonGate(CommonGateConfig(), "ssdlite-pedestrian", TILES)
    samples = [{"features": gate.features(clip[r["index"]], r["ref"], r["tau"]), "changed": r["changed"]}
               for r in replay_rule(clip, gate.config)]
    report = warm_start(gate, samples, 300, 1e-2, torch.Generator().manual_seed(0), progress=False)
    return gate, report


def test_gate_shapes_gradients_and_macs():
    torch.manual_seed(0)
    gate = CommonGate(CommonGateConfig(channels=8, depth=1, hidden=8))
    x, ref = torch.rand(1, 3, 100, 70, requires_grad=True), torch.rand(1, 3, 100, 70)
    feats = gate.features(x, ref, torch.tensor([0.02]))
    assert feats.shape == (1, FEATURES, 7, 5)  # ceil(100/16) x ceil(70/16) blocks
    logits = gate(feats)
    assert logits.shape == (1, 1, 7, 5)
    skip, p = gate.sample(logits)
    assert set(skip.detach().unique().tolist()) <= {0.0, 1.0} and ((p > 0) & (p < 1)).all()
    skip.sum().backward()  # straight-through: the hard mask's gradient reaches every parameter
    assert all(prm.grad is not None and prm.grad.abs().sum() > 0 for prm in gate.parameters())
    # MACs by hand: per pixel 18 operations; per block the 3x3 embed, the mixer and the classifier.
    c, hid, n = 8, 8, 7 * 5
    assert gate.macs(100, 70) == 100 * 70 * 18 + n * (FEATURES * c * 9 + (c * 9 + c * c) + c * hid + hid)


def test_features_see_the_change_in_noise_units():
    x = torch.zeros(1, 3, 32, 32)
    ref = x.clone()
    ref[..., :16, :16] = 0.05  # 256 pixels changed by 0.05 in the first block
    f = block_features(x, ref, torch.tensor([0.02]), 16, 8)
    # counts above 0.5, 1, 2 tau (0.01, 0.02, 0.04) are all 256 pixels; above 4 tau (0.08) none
    assert f[0, :3, 0, 0] == pytest.approx(torch.log1p(torch.tensor(256 / 8.0)).repeat(3))
    assert f[0, 3, 0, 0] == 0 and f[0, :6, 1, 1].abs().sum() == 0


def test_warm_start_reproduces_regiondrop_on_a_real_clip(warm_gate, clip):
    gate, report = warm_gate
    # On the frames it was fitted on, and on 10 later frames it never saw.
    assert report["iou"] >= 0.8, report
    later = [torch.as_tensor(f) for f in clip]
    kept, rule = [], []
    for r in replay_rule(later[-12:], gate.config):
        x = later[-12:][r["index"]]
        kept.append(1 - gate.decide(gate(gate.features(x, r["ref"], r["tau"]))))
        rule.append(r["changed"])
    assert iou(torch.cat(kept), torch.cat(rule)) >= 0.7


def test_training_positive_equals_what_the_engine_computes(ssd, clip, warm_gate):
    model, _ = ssd
    gate, _ = warm_gate
    policy = PassGates.from_gates(gate)
    engine = passrt.sparsify(model, policy, executor="reference")
    x0, x1 = clip[0], clip[3]
    engine(x0)  # refresh: every cache is the dense pass on x0, the reference is x0
    out = engine(x1)
    st = engine.stats()
    assert not st["refresh"] and 0 < st["active_fraction"] < 0.6, st["active_fraction"]
    blocks = policy.common.masks.blocks  # the kept blocks after the margin, as the engine used them
    runner = ReuseRunner(model, plan_steps(model, x0), SIZE, gate.config.block)
    _, caches = runner.record(x0)
    positive = runner.run(x1, x0, caches, blocks[None, None])
    dense = model(x1)
    for got, want, d in zip(positive, out, dense):
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-4), (got - want).abs().max()
    # and the reuse did change something (the test would pass trivially if it recomputed all)
    assert max(float((o - d).abs().max()) for o, d in zip(out, dense)) > 1e-3


def test_all_keep_gate_equals_dense(ssd, clip):
    model, _ = ssd
    gate = CommonGate(CommonGateConfig(), "ssdlite-pedestrian", TILES)
    with torch.no_grad():
        for p in gate.parameters():
            p.zero_()
        gate.classify[-1].bias.fill_(-10.0)  # skip logit -10 everywhere: keep every block
    engine = passrt.sparsify(model, PassGates.from_gates(gate, scene_cut=1.0, crossover=1.0), executor="reference")
    for x in clip[:4]:
        out = engine(x)
        for got, want in zip(out, model(x)):
            assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)
    st = engine.stats()
    assert st["skip_rate"] == 0.0 and st["gate_macs"] == gate.macs(*SIZE)


def test_design_must_match_the_gates_file(tmp_path):
    gate = CommonGate()
    gate.save(tmp_path / "g.pt")
    assert PassGates.load(tmp_path / "g.pt").design == "common"
    with pytest.raises(PassrtError, match="design=paper asked for"):
        PassGates.load(tmp_path / "g.pt", design="paper")


def _common_opts(tmp_path, name, steps):
    from passrt.training.train import TrainOptions

    return TrainOptions(clips=["vtest@300:"], out=str(tmp_path / name), input_size=(144, 192), max_frames=12,
                        steps=steps, warm_steps=20, cache_frames=4, checkpoint_every=2)


def test_resume_continues_exactly_where_a_straight_run_would_be(tmp_path):
    from passrt.training.train import train_gates

    straight = train_gates(_common_opts(tmp_path, "straight.pt", 4), progress=False)
    train_gates(_common_opts(tmp_path, "resumed.pt", 2), progress=False)
    resumed = train_gates(_common_opts(tmp_path, "resumed.pt", 4), resume=True, progress=False)
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)
    assert [h["step"] for h in resumed.info["history"]] == [1, 2, 3, 4]
    assert resumed.info["history"] == straight.info["history"]
    assert resumed.info["warm"] == straight.info["warm"] and resumed.info["warm"]["steps"] == 20
    # the triplet steps did move the gate (otherwise "equal" would say nothing)
    warm_only = train_gates(_common_opts(tmp_path, "warm.pt", 0), progress=False)
    assert any(not torch.equal(warm_only.state_dict()[k], v) for k, v in straight.state_dict().items())
