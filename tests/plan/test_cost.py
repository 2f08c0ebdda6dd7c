"""The cost model (passrt/plan/cost.py) on plans whose sizes can be counted by hand."""

import pytest
import torch
from torch import nn

from passrt.engine import sparse_model as sm
from passrt.plan import cost


class Block(nn.Module):
    """A 3x3 stem (stride 2), a depthwise 3x3 with its 1x1 projection (fused by the planner), a residual 1x1."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 8, 1)
        self.expand = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        y = self.pw(self.dw(torch.relu(self.stem(x))))
        return self.expand(y) + y


@pytest.fixture(scope="module")
def layers():
    model = sm.sparsify(Block().eval(), "regiondrop", executor="reference")
    with torch.no_grad():
        model(torch.rand(1, 3, 64, 96))
    return {l.kind: l for l in cost.layer_costs(model.plan.steps)}, model


def test_sizes_by_hand(layers):
    by_kind, model = layers
    assert set(by_kind) == {"conv", "conv_dw+conv1x1", "conv1x1"}
    stem, dw, pw = by_kind["conv"], by_kind["conv_dw+conv1x1"], by_kind["conv1x1"]
    cells = 32 * 48
    assert stem.macs == 16 * 3 * 9 * cells and stem.in_elems == 3 * 64 * 96 and stem.out_elems == 16 * cells
    assert dw.macs == (16 * 9 + 8 * 16) * cells and dw.mid_elems == 16 * cells and dw.weight_elems == 16 * 9 + 8 * 16
    assert pw.extra_elems == 8 * cells, "the residual is read per output cell"
    t = stem.tile  # a 3x3 stride-2 window over a t x t tile reads (2t + 1)^2 input cells for 4t^2
    assert stem.halo == pytest.approx((2 * t + 1) ** 2 / (4 * t * t))
    assert sum(l.macs for l in by_kind.values()) == model.stats()["macs_dense"]


def test_times_follow_the_mask(layers):
    by_kind, _ = layers
    dev, eff = cost.DEVICES["orin"], cost.Efficiency()
    pw = by_kind["conv1x1"]
    times = [cost.sparse_time(pw, a, dev, eff) for a in (0.0, 0.1, 0.5, 1.0)]
    assert times == sorted(times) and times[0] == pytest.approx(dev.launch_s), "0 % active costs one launch"
    # An explicit copy of the cache costs its read + write whatever the mask.
    copy = cost.sparse_time(pw, 0.0, dev, eff, cost.Design(state_copy=True)) - times[0]
    assert copy == pytest.approx(2 * pw.out_elems * 4 / (dev.dram_bw * eff.dense_bw))


def test_dense_is_a_roofline(layers):
    by_kind, _ = layers
    stem, dev, eff = by_kind["conv"], cost.DEVICES["nano"], cost.Efficiency()
    mac_s = stem.macs / (dev.simt_fp16_macs * eff.dense_mac)  # no tensor cores on sm_53
    mem_s = (stem.in_elems + stem.out_elems + stem.weight_elems) * 2 / (dev.dram_bw * eff.dense_bw)
    assert cost.dense_time(stem, dev, eff) == pytest.approx(max(mac_s, mem_s) + dev.launch_s)


def test_predict_and_crossover(layers):
    by_kind, _ = layers
    ls, dev = list(by_kind.values()), cost.DEVICES["orin"]
    full = cost.predict(ls, {}, dev)
    assert full["sparse_s"] <= full["dense_s"] + 2 * dev.launch_s, "the crossover caps sparse near dense"
    quiet = cost.predict(ls, {l.label: 0.05 for l in ls}, dev)
    old = cost.predict(ls, {l.label: 0.05 for l in ls}, dev, design=cost.OLD_DESIGN, crossover=False)
    assert quiet["sparse_s"] < full["sparse_s"] and old["sparse_s"] > quiet["sparse_s"]
    for l in ls:
        x = cost.crossover(l, dev)
        assert 0.0 <= x <= 1.0
        if 0.0 < x < 1.0:  # sparse is no slower below the crossover and slower above it
            td = cost.dense_time(l, dev, cost.Efficiency())
            assert cost.sparse_time(l, x * 0.99, dev, cost.Efficiency()) <= td < cost.sparse_time(l, min(1, x * 1.01 + 1e-3), dev, cost.Efficiency())
