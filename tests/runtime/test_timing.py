"""Stage statistics in constant memory, checked against NumPy on the same samples."""

import numpy as np
import pytest

from passrt.runtime.timing import LatencyStats, StageTimer


@pytest.mark.parametrize("dist", ["lognormal", "bimodal", "constant"])
def test_quantiles_within_one_percent_of_numpy(dist):
    rng = np.random.default_rng(0)
    values = {"lognormal": rng.lognormal(3, 0.5, 20_000),
              "bimodal": np.concatenate([rng.normal(12, 0.5, 15_000), rng.normal(80, 5, 5_000)]).clip(0.01),
              "constant": np.full(1000, 7.25)}[dist]
    stats = LatencyStats()
    for v in values:
        stats.add(float(v))
    out = stats.summary()
    assert out["count"] == len(values)
    assert out["min"] == values.min() and out["max"] == values.max()
    assert out["mean"] == pytest.approx(values.mean(), rel=1e-9)
    for q in (50, 90, 95, 99):
        assert out[f"p{q}"] == pytest.approx(np.percentile(values, q), rel=0.011), q


def test_memory_does_not_grow_with_frames():
    timer = StageTimer()
    sizes = []
    for frame in range(3000):
        with timer.stage("engine"):
            pass
        timer.end_frame()
        if frame in (10, 2999):
            sizes.append(sum(s.buckets.nbytes for s in timer.stats.values()))
    assert sizes[0] == sizes[1] and timer.stats["engine"].count == 3000
    assert set(timer.summary()) == {"engine", "total"}


def test_few_samples_interpolate_like_numpy():
    values = [32.3, 3951.9, 71.6, 384.9, 50.0, 60.0, 66.0, 70.0, 45.0, 40.0]
    stats = LatencyStats()
    for v in values:
        stats.add(v)
    for q in (50, 90, 95, 99):  # within a bucket (1 %) of the neighbours NumPy interpolates between
        assert stats.quantile(q) == pytest.approx(np.percentile(values, q), rel=0.011), q
