"""The gate module on small inputs: shapes, straight-through gradients, normalisations, MACs,
and the triplet mixing against hand-computed values."""

import math

import pytest
import torch
from torch import nn

from passrt.errors import PassrtError
from passrt.training import triplet
from passrt.plan.masks import cells_of
from passrt.policies.gate import GateConfig, PassGate
from passrt.policies.pass_gates import patch_skip_rate


@pytest.mark.parametrize("classifier", ["conv", "linear"])
@pytest.mark.parametrize("h,w,patch", [(16, 24, 4), (17, 23, 4), (5, 7, 1), (9, 9, 8)])
def test_logit_grid_covers_the_input_in_patches(classifier, h, w, patch):
    grid = (math.ceil(h / patch), math.ceil(w / patch))
    gate = PassGate(3, patch, GateConfig(channels=8, depth=2, hidden=16, classifier=classifier), grid=grid)
    logits = gate(torch.randn(1, 3, h, w), torch.randn(1, 3, h, w))
    assert logits.shape == (1, 1, *grid)


def test_linear_classifier_refuses_another_input_size():
    gate = PassGate(3, 4, GateConfig(classifier="linear"), grid=(4, 6))
    with pytest.raises(PassrtError, match="linear classifier was built for a 4x6 patch grid"):
        gate(torch.randn(1, 3, 32, 32), torch.randn(1, 3, 32, 32))


def test_straight_through_mask_is_binary_and_passes_gradients_to_every_parameter():
    torch.manual_seed(0)
    gate = PassGate(4, 2, GateConfig(channels=8, depth=2, hidden=8))
    x, ref = torch.randn(1, 4, 8, 8), torch.randn(1, 4, 8, 8)
    mask, p = gate.sample(gate(x, ref))
    assert set(mask.detach().unique().tolist()) <= {0.0, 1.0}
    assert ((p >= 0) & (p <= 1)).all()
    weights = torch.randn_like(mask)
    (mask * weights).sum().backward()
    for name, param in gate.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    # Straight-through: the hard mask passes back exactly the probability's gradient.
    logits = torch.randn(1, 1, 3, 3, requires_grad=True)
    mask, p = gate.sample(logits)
    w = torch.randn(1, 1, 3, 3)
    via_mask, = torch.autograd.grad((mask * w).sum(), logits, retain_graph=True)
    via_p, = torch.autograd.grad((p * w).sum(), logits)
    torch.testing.assert_close(via_mask, via_p)
    assert via_p.abs().sum() > 0


def test_minmax_normalisation_spans_zero_to_one_per_frame():
    gate = PassGate(2, 1, GateConfig(normalise="minmax"))
    logits = torch.tensor([[[[1.0, 2.0], [3.0, 5.0]]]])
    p = gate.skip_probability(logits, noise=False)
    torch.testing.assert_close(p, torch.tensor([[[[0.0, 0.25], [0.5, 1.0]]]]))


def test_sigmoid_decision_is_a_threshold_on_the_logit():
    gate = PassGate(2, 1, GateConfig(normalise="sigmoid", temperature=0.5))
    logits = torch.tensor([[[[-3.0, -0.1], [0.1, 4.0]]]])
    assert gate.decide(logits).flatten().tolist() == [0.0, 0.0, 1.0, 1.0]
    assert gate.decide(logits, skip_above=0.99).flatten().tolist() == [0.0, 0.0, 0.0, 1.0]


def test_macs_count_every_layer_of_the_gate():
    cfg = GateConfig(channels=8, depth=2, hidden=16)
    gate = PassGate(3, 4, cfg)
    n = 2 * 3  # an 8x12 input in 4-cell patches
    expected = n * 8 * 6 * 16 + 2 * n * (8 * 9 + 8 * 8) + n * (8 * 16 + 16)
    assert gate.macs(8, 12) == expected
    counted = []
    hooks = [m.register_forward_hook(lambda m, i, o: counted.append(
        o.numel() // o.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]))
        for m in gate.modules() if isinstance(m, nn.Conv2d)]
    gate(torch.randn(1, 3, 8, 12), torch.randn(1, 3, 8, 12))
    for h in hooks:
        h.remove()
    assert sum(counted) == expected


def test_bad_gate_settings_are_one_line_errors():
    with pytest.raises(PassrtError, match="classifier"):
        PassGate(3, 4, GateConfig(classifier="mlp"))
    with pytest.raises(PassrtError, match="temperature"):
        PassGate(3, 4, GateConfig(temperature=0))


def test_patch_skip_rate_is_the_papers_eq2_with_edge_patches_by_area():
    # 10x6 input, 4-cell patches: a 3x2 grid whose last row and column overhang.
    skip = torch.tensor([[[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]]])
    # skipped areas: (0,0) 4x4=16, (1,1) 4x2=8, (2,0) 2x4=8, (2,1) 2x2=4 -> 36 of 60 cells
    assert patch_skip_rate(skip, 4, 10, 6) == pytest.approx(36 / 60)
    assert patch_skip_rate(torch.ones(1, 1, 2, 2), 4, 8, 8) == 1.0


class Pair(nn.Module):
    """Two 1x1 convs whose inputs can be tapped: conv_a (identity) then conv_b (x2)."""

    def __init__(self):
        super().__init__()
        self.conv_a = nn.Conv2d(1, 1, 1, bias=False)
        self.conv_b = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.ones_(self.conv_a.weight)
        nn.init.constant_(self.conv_b.weight, 2.0)

    def forward(self, x):
        return self.conv_b(self.conv_a(x))


def test_triplet_positive_and_negative_by_hand():
    model = Pair()
    now = torch.arange(16.0).view(1, 1, 4, 4)
    before = {"conv_a": torch.full((1, 1, 4, 4), -1.0)}
    skip = {"conv_a": torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])}  # skip the top-left 2x2 patch
    positive = triplet.run_mixed(model, now, before, skip, {"conv_a": 2})
    negative = triplet.run_mixed(model, now, before, {"conv_a": 1 - skip["conv_a"]}, {"conv_a": 2})
    expected_p = now.clone()
    expected_p[..., :2, :2] = -1.0
    expected_n = torch.full_like(now, -1.0)
    expected_n[..., :2, :2] = now[..., :2, :2]
    torch.testing.assert_close(positive, 2 * expected_p)
    torch.testing.assert_close(negative, 2 * expected_n)
    # hooks are gone afterwards
    torch.testing.assert_close(model(now), 2 * now)


def test_recording_sees_each_gated_input():
    model = Pair()
    x = torch.rand(1, 1, 3, 3)
    out, seen = triplet.run_recording(model, x, ["conv_a", "conv_b"])
    torch.testing.assert_close(seen["conv_a"], x)
    torch.testing.assert_close(seen["conv_b"], x)
    torch.testing.assert_close(out, 2 * x)


def test_expand_patches_crops_to_the_map():
    m = torch.tensor([[[[1.0, 0.0]]]])
    assert cells_of(m, 3, 2, 5).tolist() == [[[[1, 1, 1, 0, 0], [1, 1, 1, 0, 0]]]]
