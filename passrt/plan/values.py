"""The traced model rewritten to return the values an executor caches, so a dense engine can fill the caches.

A frame a dense engine (ONNX Runtime) answers leaves passrt's caches out of date; the next frame that can
run sparse needs them full. Computing them with passrt's own dense path costs more than the engine's frame
(on CPU 1.35-1.46x ONNX Runtime's at 768x576 and 1280x720, benchmarks/fill_cost.py); asking the engine for
the cached values too costs its frame plus writing them once (1.25x).
"""

from __future__ import annotations

import torch.fx as fx

from passrt.plan.steps import SpatialStep


def cached_names(plan) -> list[str]:
    """The values a dense engine fills: every spatial step's cache (the input is written from the frame, and
    non-spatial steps are recomputed from these: they are small)."""
    return [s.name for s in plan.steps if isinstance(s, SpatialStep)]


def values_module(plan, names: list[str]) -> fx.GraphModule:
    """``plan.graph`` returning, instead of its outputs, each named value as one channels-last tensor
    (1, H, W, C): the layout of a cache's rows, so an engine can write its outputs straight into them."""
    graph = fx.Graph()
    copies: dict = {}
    graph.graph_copy(plan.graph.graph, copies)
    nodes = {n.name: n for n in plan.graph.graph.nodes}
    outs = [graph.call_method("permute", (copies[nodes[plan.value_nodes[name]]], 0, 2, 3, 1)) for name in names]
    graph.output(tuple(outs))
    return fx.GraphModule(plan.graph, graph)
