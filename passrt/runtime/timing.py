"""Per-stage wall-clock timing (CUDA events when the engine runs on a GPU)."""

from __future__ import annotations

import time
from collections import defaultdict, deque
from contextlib import contextmanager

import numpy as np


def percentiles(values, qs=(50, 95, 99)) -> dict:
    arr = np.asarray(values, dtype=np.float64)
    return {q: float(np.percentile(arr, q)) if arr.size else float("nan") for q in qs}


class StageTimer:
    def __init__(self, cuda: bool = False):
        self.cuda = cuda
        self.samples: dict[str, list[float]] = defaultdict(list)  # stage -> ms per frame
        self._frame: dict[str, float] = defaultdict(float)
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
        for name, ms in self._frame.items():
            self.samples[name].append(ms)
        self._frame = defaultdict(float)

    def summary(self) -> dict:
        out = {}
        for name, values in self.samples.items():
            p = percentiles(values)
            out[name] = {"p50": p[50], "p95": p[95], "p99": p[99], "mean": float(np.mean(values))}
        return out


class RollingFps:
    def __init__(self, window: int = 30):
        self.times: deque = deque(maxlen=window)

    def tick(self) -> float:
        self.times.append(time.perf_counter())
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])
