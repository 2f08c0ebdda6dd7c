"""CUDA graphs of per-frame work: captured once per set of buffer addresses, replayed after.

A frame of a sparse engine is hundreds of small launches (one or two per layer); launching them
one by one costs more than the work on a calm frame (benchmarks/RESULTS.md, "GPU design from the
cost model": launch-bound). A CUDA graph launches them all at once, but it replays the addresses
it was captured with, so one graph is kept per *key*: the addresses the work reads and writes.
The native executor on CUDA has one (its buffers never move); a TensorRT engine whose state
buffers swap every frame has two, replayed alternately.

:class:`FrameGraphs` holds that decision (pure Python, tested on CPU with a stand-in graph):
run eagerly for the first ``warmup`` frames of each key (lazy initialisation, TensorRT's deferred
updates: its documentation asks for one enqueue before capture), then capture once and replay.
A capture that fails (a host synchronisation somewhere in the work) is reported once, as a
warning naming the error, and the work runs eagerly from then on: slower, never wrong.
"""

from __future__ import annotations

import warnings
from collections import Counter
from typing import Callable, Hashable, Optional


def capture_cuda_graph(body: Callable[[], None], stream=None):
    """``body``'s launches captured in a ``torch.cuda.CUDAGraph`` (on ``stream``, else a side stream
    of PyTorch's choosing); nothing in it runs until the graph is replayed."""
    import torch

    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=stream):
        body()
    return graph


class FrameGraphs:
    """``graphs(key, body)``: run one frame's work, as a replayed graph once ``key`` has been seen
    ``warmup`` times. ``capture(body) -> graph`` (an object with ``replay()``) defaults to
    :func:`capture_cuda_graph`; ``enabled=False`` always runs eagerly (graphs off)."""

    def __init__(self, warmup: int = 1, capture: Optional[Callable] = None, enabled: bool = True, what: str = "work"):
        self.warmup, self.enabled, self.what = warmup, enabled, what
        self._capture = capture or capture_cuda_graph
        self.graphs: dict = {}
        self.seen: Counter = Counter()
        self.failed: Optional[str] = None  # why capture failed (then every frame runs eagerly)
        self.replays = 0

    @property
    def active(self) -> bool:
        """Graphs are in use (enabled, and no capture has failed)."""
        return self.enabled and self.failed is None

    def __call__(self, key: Hashable, body: Callable[[], None]) -> None:
        if not self.active:
            body()
            return
        graph = self.graphs.get(key)
        if graph is None:
            if self.seen[key] < self.warmup:
                self.seen[key] += 1
                body()
                return
            try:
                graph = self._capture(body)
            except Exception as e:  # noqa: BLE001 - any capture error means: run eagerly, and say so
                self.failed = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".rstrip(": ")
                warnings.warn(f"CUDA graph capture of the {self.what} failed ({self.failed}); running it without "
                              "graphs", RuntimeWarning, stacklevel=2)
                body()  # the capture ran nothing: this frame still needs its work
                return
            self.graphs[key] = graph
        graph.replay()
        self.replays += 1

    def clear(self) -> None:
        """Forget every graph (the buffers they were captured with are gone)."""
        self.graphs.clear()
        self.seen.clear()
