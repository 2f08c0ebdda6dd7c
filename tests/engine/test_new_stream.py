"""Several streams on one model: shared weights and plans, separate caches and policy state.
Interleaving two streams frame by frame gives each exactly what it gets alone."""

import cv2
import pytest
import torch
from torch import nn

from passrt import sparsify
from passrt.errors import PassrtError
from passrt.policies import make_policy
from passrt.runtime.frames import read_frames


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                         nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(16, 4, 1)).eval()


def frames(uri, n, size, start=0):
    clip = read_frames(uri, n, size=size, start=start)
    return [torch.from_numpy(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None].float() / 255
            for f in clip.frames]


@pytest.mark.parametrize("policy,params", [("regiondrop", {}), ("exact", {"threshold": 0.05})])
def test_interleaved_streams_equal_each_stream_alone(policy, params):
    # Two stretches of a fixed camera at two resolutions: a plan per size, shared by the streams.
    a, b = frames("vtest", 12, (144, 192)), frames("vtest", 12, (96, 128), start=300)
    net = small_net()
    alone, alone_stats = [], []
    for clip in (a, b):
        engine = sparsify(net, policy, **params)
        alone.append([engine(x) for x in clip])
        alone_stats.append(engine.stats())
    first = sparsify(net, policy, **params)
    second = first.new_stream(make_policy(policy, **params))
    together = [[], []]
    for xa, xb in zip(a, b):
        together[0].append(first(xa))
        together[1].append(second(xb))
    for stream in (0, 1):
        for got, want in zip(together[stream], alone[stream]):
            assert torch.equal(got, want)
    # Same refreshes and work as alone, and work was skipped: each stream's caches were its own
    # (a shared cache, overwritten by the other stream, would corrupt or refresh every frame).
    for engine, stats in zip((first, second), alone_stats):
        assert engine.stats()["refreshes"] == stats["refreshes"] < 12
        assert engine.stats()["macs_executed_mean"] == stats["macs_executed_mean"]
    assert second.model is first.model and second.graph is first.graph
    assert len(first._plans) == 2 and first._plans is second._plans


def test_new_stream_refuses_a_shared_policy():
    engine = sparsify(small_net(), "regiondrop")
    with pytest.raises(PassrtError, match="fresh policy"):
        engine.new_stream(engine.policy)
