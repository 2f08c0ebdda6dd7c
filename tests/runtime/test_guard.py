"""The run-time accuracy guard (passrt.runtime.guard) on the real detector and real frames."""

import pytest
import torch

from passrt import assets
from passrt.models import load_model
from passrt.runtime.backends import open_backend
from passrt.runtime.frames import read_frames
from passrt.runtime.guard import FLOOR, Guarded


@pytest.fixture(scope="module")
def spec():
    return load_model("ssdlite-pedestrian")


@pytest.fixture(scope="module")
def frames(spec):
    # 288x384: the detector still finds vtest's people, at a quarter of the cost.
    return read_frames(str(assets.fetch("vtest")), count=12, start=200, size=(288, 384),
                       preprocess=spec.preprocess).frames


def _guard(spec, policy, every=1):
    # passrt computes every frame itself (no dense engine), so what the guard sees is passrt's caches
    return Guarded(open_backend(policy, spec, dense_engine=None), open_backend("torch:dense", spec),
                   spec.postprocess, every)


def test_corrupted_caches_are_caught_and_refreshed(spec, frames):
    guard = _guard(spec, "exact")  # exact at threshold 0: equal to dense until something corrupts it
    for x in frames[:4]:
        guard(x)
    assert guard.refreshes == 0 and guard.stats()["guard"]["agreement_ap50"] == 1.0
    with torch.inference_mode():  # corrupt every cached layer output, as a bad memory write would
        for value in guard.sparse.model.executor.env.values():
            (value.rows if hasattr(value, "rows") else value).normal_()
    guard(frames[3])  # the same frame again: nothing changed, so nothing is recomputed
    assert guard.refreshes == 1 and guard.stats()["guard"]["frame_ap50"] < 0.98
    out = guard(frames[3])  # the refresh: dense again
    assert guard.refreshes == 1 and guard.stats()["guard"]["frame_ap50"] == 1.0
    reference = guard.dense(frames[3])
    assert max(float((a - b).abs().max()) for a, b in zip(out, reference)) < 1e-3


def test_a_missed_change_tightens_the_operating_point(spec, frames):
    # An absolute threshold no real change reaches: the people walk, nothing is recomputed.
    guard = _guard(spec, "regiondrop:threshold=0.99", every=2)
    for x in frames:
        guard(x)
    stats = guard.stats()["guard"]
    assert guard.refreshes >= 1 and stats["checks"] == len(frames) // 2
    assert FLOOR * 0.99 <= stats["threshold"] < 0.99  # tightened, within its limit


def test_guard_checks_only_every_n_frames_and_reports(spec, frames):
    guard = _guard(spec, "regiondrop", every=5)
    for x in frames[:10]:
        guard(x)
    stats = guard.stats()
    assert stats["guard"]["checks"] == 2 and "active_fraction" in stats
    assert set(stats["guard"]["output_error"]) == {"max", "mean"}
