"""The 'pass' policy in the engine: gates decide tiles, layers follow their gate, gate MACs count,
R_p / R_m by hand, all-keep gates equal dense on real frames, bad gates files."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import passrt
from passrt.errors import PassrtError
from passrt.runtime.frames import read_frames
from passrt.policies import PassGates
from passrt.policies.gate import GateConfig
from passrt.policies.gateset import GateSet
from passrt.training.train import TILES, plan_steps
from passrt.models import load_model


class TwoConvs(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        return self.conv2(torch.relu(self.conv1(x)))


def _gates(model, x, layers=None, config=GateConfig(channels=4, depth=1, hidden=4)):
    return GateSet.for_steps("toy", plan_steps(model, x), config, TILES, layers)


def _fixed_logits(gates, label, logits):
    gates.gate(label).forward = lambda x, ref: logits


def test_rp_rm_and_gate_macs_by_hand():
    model, x = TwoConvs().eval(), torch.rand(1, 3, 64, 64)
    gates = _gates(model, x, ["conv1"])
    assert gates.sites["conv1"].patch == 8  # tile 8 cells (16 px / stride 1, at most 8) x stride 1
    keep = torch.zeros(1, 1, 8, 8)
    keep[0, 0, 0, 0] = keep[0, 0, 4, 6] = keep[0, 0, 6, 1] = 1
    _fixed_logits(gates, "conv1", (1 - keep) * 20 - 10)  # skip logit +10, keep logit -10
    engine = passrt.sparsify(model, PassGates.from_gates(gates))
    engine(x)
    assert engine.stats()["refresh"] and engine.stats()["skip_rate"] == 0.0
    engine(x + 0.1)
    st = engine.stats()
    # A kept patch is recomputed with every cell that reads it: the 3x3 convs' cells along the
    # edges of the 8 patches around it read it, so those tiles are recomputed too (conv2 reads
    # conv1's recomputed cells, two cells deep at most: the same tiles).
    recomputed = F.max_pool2d(keep, 3, 1, 1)[0, 0]
    n = int(recomputed.sum())
    assert n == 4 + 9 + 9
    for label in ("conv1", "conv2"):  # conv2 follows conv1's gate
        assert st["layers"][label]["mode"] == "sparse"
        assert st["layers"][label]["skip_rate"] == pytest.approx(1 - n / 64)
        assert engine.tile_masks()[label].equal(recomputed.bool())
    assert st["skip_rate"] == pytest.approx(1 - n / 64)
    assert st["gates"]["conv1"]["skip_rate"] == pytest.approx(61 / 64)  # R_p: the gate's own decision
    gate_macs = gates.gate("conv1").macs(64, 64)
    assert st["gate_macs"] == gate_macs
    dense = (4 * 3 * 9 + 4 * 4 * 9) * 64 * 64
    assert st["macs_dense"] == dense
    assert st["macs_executed"] == pytest.approx(n / 64 * dense + gate_macs)
    assert st["mac_reduction"] == pytest.approx(1 - (n / 64 * dense + gate_macs) / dense)


def test_skipped_patches_keep_their_cache_and_kept_ones_are_recomputed():
    model, x0 = TwoConvs().eval(), torch.rand(1, 3, 48, 48)
    gates = _gates(model, x0, ["conv1"])
    keep = torch.zeros(1, 1, 6, 6)
    keep[0, 0, 2:4, 2:4] = 1
    _fixed_logits(gates, "conv1", (1 - keep) * 20 - 10)
    engine = passrt.sparsify(model, PassGates.from_gates(gates))
    engine(x0)
    x1 = x0.clone()
    x1[..., 16:32, 16:32] += 0.5  # change only inside the kept patches...
    x1[..., 0:4, 44:48] += 0.5  # ... and in a skipped corner
    out = engine(x1)
    with torch.no_grad():
        old, new = model(x0), model(x1)
    # Recomputed: the kept patches and the tiles around them, whose edge cells read the kept ones.
    torch.testing.assert_close(out[..., 8:40, 8:40], new[..., 8:40, 8:40])
    torch.testing.assert_close(out[..., 0:8, 40:48], old[..., 0:8, 40:48])  # skipped: still frame 0's


@pytest.fixture(scope="module")
def ssdlite():
    spec = load_model("ssdlite-pedestrian")
    frames = read_frames("vtest", 6, (144, 192), preprocess=spec.preprocess).frames
    return spec, frames


def test_all_keep_gates_equal_dense_on_real_frames(ssdlite):
    spec, frames = ssdlite
    gates = GateSet.for_steps(spec.name, plan_steps(spec.module, frames[0]), GateConfig(), TILES)
    assert len(gates.labels()) >= 5
    for label in gates.labels():
        nn.init.constant_(gates.gate(label).classify[-1].bias, -1e4)  # skip probability 0 everywhere
    engine = passrt.sparsify(spec.module, PassGates.from_gates(gates))
    for i, x in enumerate(frames):
        got = engine(x)
        with torch.no_grad():
            want = spec.module(x)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
        st = engine.stats()
        if i:
            assert not st["refresh"] and st["skip_rate"] == 0.0
            assert all(g["skip_rate"] == 0.0 for g in st["gates"].values())
            assert st["macs_executed"] == pytest.approx(st["macs_dense"] + st["gate_macs"])


def test_all_skip_gates_reuse_everything(ssdlite):
    spec, frames = ssdlite
    gates = GateSet.for_steps(spec.name, plan_steps(spec.module, frames[0]), GateConfig(), TILES)
    for label in gates.labels():
        nn.init.constant_(gates.gate(label).classify[-1].bias, 1e4)
    engine = passrt.sparsify(spec.module, PassGates.from_gates(gates))
    first = engine(frames[0])
    again = engine(frames[3])
    for a, b in zip(first, again):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # everything reused from frame 0
    st = engine.stats()
    assert st["skip_rate"] > 0.9 and st["macs_executed"] < 0.05 * st["macs_dense"]


def test_gates_file_round_trip_and_errors(ssdlite, tmp_path):
    spec, frames = ssdlite
    gates = GateSet.for_steps(spec.name, plan_steps(spec.module, frames[0]), GateConfig(), TILES)
    path = tmp_path / "g.pt"
    gates.save(path)
    loaded = PassGates.load(path).net
    assert loaded.labels() == gates.labels()
    for k, v in gates.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    with pytest.raises(PassrtError, match="no such gates file"):
        PassGates.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PassrtError, match="not a readable gates file"):
        PassGates.load(tmp_path / "junk.pt")
    with pytest.raises(PassrtError, match="needs gates"):
        passrt.sparsify(spec.module, "pass")(frames[0])
    toy = TwoConvs().eval()
    engine = passrt.sparsify(toy, PassGates.load(path))
    with pytest.raises(PassrtError, match="trained for another model|this model has none"):
        engine(torch.rand(1, 3, 32, 32))
