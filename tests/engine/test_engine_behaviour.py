"""Engine behaviour: non-local ops, errors, refreshes, statistics (long-run error: test_no_drift.py)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import passrt
from passrt.errors import PassrtError


class SqueezeExcite(nn.Module):
    """A conv net with a global-pooling branch (non-local) in the middle and a linear head."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, 2, 1)
        self.fc1, self.fc2 = nn.Conv2d(8, 4, 1), nn.Conv2d(4, 8, 1)
        self.c2 = nn.Conv2d(8, 8, 3, 1, 1)
        self.cls = nn.Linear(8, 5)

    def forward(self, x):
        y = F.relu(self.c1(x))
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(y, 1)))))
        y = self.c2(y * s)
        return y, self.cls(y.mean((2, 3)))


def frames(n, h=32, w=40, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h, w, generator=gen)
    out = [x]
    for _ in range(n - 1):
        x = x.clone()
        x[:, :, 4:9, 6:12] = torch.rand(1, 3, 5, 6, generator=gen)
        out.append(x)
    return out


def test_non_local_ops_fall_back_to_dense_correctly():
    net = SqueezeExcite().eval()
    engine = passrt.sparsify(net, "exact")
    for x in frames(4):
        got, want = engine(x), net(x)
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5)
    layers = engine.stats()["layers"]
    assert layers["c1"]["mode"] == "sparse"  # before the global pooling: still sparse
    assert layers["c2"]["mode"] == "dense"  # after it, everything it feeds runs in full


def test_unchanged_frame_computes_nothing():
    net = SqueezeExcite().eval()
    engine = passrt.sparsify(net, "exact")
    x = frames(1)[0]
    engine(x)
    out = engine(x.clone())
    stats = engine.stats()
    assert stats["macs_executed"] == 0 and stats["active_fraction"] == 0
    assert all(layer["mode"] == "skipped" for layer in stats["layers"].values())
    torch.testing.assert_close(out[0], net(x)[0])


def test_unsupported_op_is_named():
    class Rolls(nn.Module):
        def forward(self, x):
            return torch.roll(x, 1, 2)

    with pytest.raises(PassrtError, match="roll"):
        passrt.sparsify(Rolls(), "exact")(torch.rand(1, 3, 8, 8))
    # ... and can be declared safe to run densely.
    engine = passrt.sparsify(Rolls(), "exact", dense_ops=[torch.roll])
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(engine(x), torch.roll(x, 1, 2))


def test_untraceable_model_gets_clear_error():
    class Branchy(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x

    with pytest.raises(PassrtError, match="cannot trace Branchy"):
        passrt.sparsify(Branchy())


def test_resolution_change_and_reset_refresh():
    net = SqueezeExcite().eval()
    engine = passrt.sparsify(net, "exact")
    engine(frames(1, 32, 40)[0])
    x = frames(1, 24, 20, seed=3)[0]
    torch.testing.assert_close(engine(x)[0], net(x)[0])
    assert engine.stats()["refresh"]
    engine(x)
    assert not engine.stats()["refresh"]
    engine.reset()
    engine(x)
    assert engine.stats()["refresh"]


def test_scene_cut_triggers_dense_refresh():
    engine = passrt.sparsify(SqueezeExcite().eval(), "regiondrop", scene_cut=0.5)
    engine(torch.zeros(1, 3, 32, 32))
    engine(torch.ones(1, 3, 32, 32))
    assert engine.stats()["refresh"]


def test_periodic_refresh():
    engine = passrt.sparsify(SqueezeExcite().eval(), "exact", refresh_every=3)
    flags = []
    for x in frames(7):
        engine(x)
        flags.append(engine.stats()["refresh"])
    assert flags == [True, False, False, True, False, False, True]


def test_crossover_runs_busy_layers_dense():
    net = SqueezeExcite().eval()
    engine = passrt.sparsify(net, "exact", crossover=0.0)
    for x in frames(2):
        out = engine(x)
    assert engine.stats()["layers"]["c1"]["mode"] == "dense"
    torch.testing.assert_close(out[0], net(x)[0])


def test_policy_names_and_parameters():
    assert isinstance(passrt.make_policy("layerwise", feature_threshold=0.1), passrt.LayerWise)
    with pytest.raises(PassrtError, match="unknown policy 'fast'"):
        passrt.make_policy("fast")
    with pytest.raises(PassrtError, match="no parameter margin"):
        passrt.make_policy("exact", margin=2)


def test_stats_account_macs():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1)).eval()
    engine = passrt.sparsify(net, "exact", tile_px=4, min_tile=4, scene_cut=1.0, executor="reference")
    x = torch.rand(1, 3, 16, 16)
    engine(x)
    assert engine.stats()["macs_dense"] == 16 * 16 * 4 * 3 * 9
    x = x.clone()
    x[0, :, 0, 0] += 1  # touches the 2x2 output cells around (0, 0): one 4x4 tile
    engine(x)
    stats = engine.stats()
    assert stats["layers"]["0"]["active_fraction"] == 1 / 16
    assert stats["macs_executed"] == 4 * 4 * 4 * 3 * 9
    assert stats["executor"].startswith("reference")


def test_policy_parameter_types_are_checked():
    assert passrt.make_policy("regiondrop", threshold=1).threshold == 1.0
    with pytest.raises(PassrtError, match="min_pixels must be int"):
        passrt.make_policy("regiondrop", min_pixels="4:margin=0")
