"""Per-stage wall-clock timing (CUDA events when the engine runs on a GPU)."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from contextlib import contextmanager

import numpy as np


def percentiles(values, qs=(50, 95, 99)) -> dict:
    arr = np.asarray(values, dtype=np.float64)
    return {q: float(np.percentile(arr, q)) if arr.size else float("nan") for q in qs}


SUMMARY_QUANTILES = (50, 90, 95, 99)  # trtexec's latency figures (with min, mean and max)


class LatencyStats:
    """Count, min, max, mean and quantiles of a stream of positive values, in constant memory.

    Values go into a histogram with logarithmic buckets (HdrHistogram's idea): bucket ``i`` holds
    [LOW * GROWTH**i, LOW * GROWTH**(i+1)), so a quantile is known to within GROWTH - 1 = 1 %
    relative, from 1 microsecond to 10^4 s, in 2,300 counters (18 KB) however long the run:
    keeping every sample costs 333 MB a day at 30 FPS. Min, max and mean are exact. Our own code
    rather than a package: this is 30 lines, and the HdrHistogram port is integer-only.
    """

    LOW, GROWTH = 1e-3, 1.01  # ms

    def __init__(self):
        self.buckets = np.zeros(int(np.ceil(np.log(1e7 / self.LOW) / np.log(self.GROWTH))) + 1, np.int64)
        self.count, self.total, self.min, self.max = 0, 0.0, float("inf"), float("-inf")

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.min, self.max = min(self.min, value), max(self.max, value)
        i = int(np.log(max(value, self.LOW) / self.LOW) / np.log(self.GROWTH))
        self.buckets[min(i, len(self.buckets) - 1)] += 1

    def quantile(self, q: float) -> float:
        """The ``q``-th percentile (0-100), interpolated between neighbouring ranks as NumPy's default
        does; each rank's value is its bucket's geometric middle (exactly min and max at the ends)."""
        if not self.count:
            return float("nan")
        rank = q / 100 * (self.count - 1)
        lo, hi = int(np.floor(rank)), int(np.ceil(rank))
        cumulative = np.cumsum(self.buckets)
        a, b = self._value_at(lo, cumulative), self._value_at(hi, cumulative)
        return float(a + (rank - lo) * (b - a))

    def _value_at(self, k: int, cumulative) -> float:
        """The k-th smallest value (0-based), to within its bucket."""
        if k == 0:
            return self.min
        if k == self.count - 1:
            return self.max
        i = int(np.searchsorted(cumulative, k, side="right"))
        return min(max(self.LOW * self.GROWTH ** (i + 0.5), self.min), self.max)

    def summary(self, qs=SUMMARY_QUANTILES) -> dict:
        out = {"count": self.count, "min": self.min if self.count else float("nan"),
               "mean": self.total / self.count if self.count else float("nan"),
               "max": self.max if self.count else float("nan")}
        out.update({f"p{q}": self.quantile(q) for q in qs})
        return out


class StageTimer:
    """Per-stage timing, frame by frame; memory does not grow with the number of frames."""

    def __init__(self, cuda: bool = False):
        self.cuda = cuda
        self.stats: dict[str, LatencyStats] = defaultdict(LatencyStats)  # stage -> ms per frame
        self._frame: dict[str, float] = defaultdict(float)
        self._recorded: dict[str, float] = {}
        self._events: list = []

    @contextmanager
    def stage(self, name: str):
        if self.cuda:
            import torch

            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._events.append((name, start, end))
            return
        t0 = time.perf_counter()
        yield
        self._frame[name] += (time.perf_counter() - t0) * 1e3

    def record(self, name: str, ms: float) -> None:
        """Add a time measured elsewhere (a TensorRT engine's GPU stages) to this frame's ``name``;
        not counted in 'total', which the host-side stages already cover."""
        self._recorded[name] = self._recorded.get(name, 0.0) + ms

    def add(self, name: str, ms: float) -> None:
        """Add a host-side time measured once for several frames (a batched engine call) to this frame's
        ``name``, counted in 'total' like a :meth:`stage`."""
        self._frame[name] += ms

    def last(self, name: str) -> float:
        """This frame's time so far in ``name`` (CPU timing), in ms."""
        return self._frame.get(name, 0.0)

    def end_frame(self) -> None:
        if self._events:
            import torch

            torch.cuda.synchronize()
            for name, start, end in self._events:
                self._frame[name] += start.elapsed_time(end)
            self._events.clear()
        if self._frame:
            self.stats["total"].add(sum(self._frame.values()))
        for name, ms in [*self._frame.items(), *self._recorded.items()]:
            self.stats[name].add(ms)
        self._frame, self._recorded = defaultdict(float), {}

    def summary(self) -> dict:
        """stage -> count, min, mean, max, p50, p90, p95, p99 (ms); 'total' is the sum of the stages."""
        return {name: stats.summary() for name, stats in self.stats.items()}


def trtexec_summary(throughput: float, stages: dict) -> list[str]:
    """Lines in trtexec's terms ("Throughput: N qps", "Latency: min = ..., percentile(99%) = ..."),
    one per stage (``stages``: stage -> :meth:`LatencyStats.summary`), 'total' first as "Latency"."""
    def line(label, s):
        return (f"{label}: min = {s['min']:.3f} ms, max = {s['max']:.3f} ms, mean = {s['mean']:.3f} ms, "
                f"median = {s['p50']:.3f} ms, percentile(90%) = {s['p90']:.3f} ms, "
                f"percentile(95%) = {s['p95']:.3f} ms, percentile(99%) = {s['p99']:.3f} ms")
    out = [f"Throughput: {throughput:.2f} qps"]
    if "total" in stages:
        out.append(line("Latency", stages["total"]))
    out += [line(f"  {name}", s) for name, s in stages.items() if name != "total"]
    return out


class RollingFps:
    def __init__(self, window: int = 30):
        self.times: deque = deque(maxlen=window)

    def tick(self) -> float:
        self.times.append(time.perf_counter())
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])
