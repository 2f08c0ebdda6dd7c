"""Which of several ways of computing the same values runs faster on this machine, learned by timing them.

Which way wins depends on the layer and the CPU (e.g. a dense layer: PyTorch's conv or passrt's tile kernels
with every tile active; PyTorch's channels-last path copies the input of every padded stride-2 conv and runs
1x1 convs through a slow path), so each is timed on the stream's own frames before one is kept."""

from __future__ import annotations

import time
from typing import Callable

TRIALS = 2  # timed runs of each way before the faster is kept


class FasterWay:
    """``run(compute)`` calls ``compute(way)``: each way in turn until each has run ``TRIALS`` times (timed,
    wall clock), then always the way with the shortest time."""

    def __init__(self, ways: tuple):
        self.seconds: dict = {way: [] for way in ways}
        self.chosen = None

    def run(self, compute: Callable):
        if self.chosen is not None:
            return compute(self.chosen)
        trying = min(self.seconds, key=lambda way: len(self.seconds[way]))
        start = time.perf_counter()
        result = compute(trying)
        self.seconds[trying].append(time.perf_counter() - start)
        if all(len(times) >= TRIALS for times in self.seconds.values()):
            self.chosen = min(self.seconds, key=lambda way: min(self.seconds[way]))
        return result


def faster_way(ways_by_key: dict, key, ways: tuple) -> FasterWay:
    """The FasterWay of ``key`` in ``ways_by_key``, made on first use (not on every call, as setdefault would)."""
    way = ways_by_key.get(key)
    if way is None:
        way = ways_by_key[key] = FasterWay(ways)
    return way
