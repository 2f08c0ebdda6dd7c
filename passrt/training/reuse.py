"""What the sparse engine computes when it reuses tiles, as a differentiable forward pass.

With a common block mask ``keep`` (1 = recompute) and caches holding every layer's outputs on
the reference frame, the engine recomputes each layer's tiles that cover a kept block, reading
its full input, and keeps the cached values in the other tiles. Every layer's inputs are
therefore already mixed (recomputed where kept, cached elsewhere), which includes the halos
that a 3x3 window reads across a tile edge. This module runs the frozen model with a forward
hook on every step's conv that does exactly that mixing:

    out_l = tiles_l * f_l(mixed inputs) + (1 - tiles_l) * cache_l

``tiles_l`` is the block mask rescaled to layer l's tile grid with the engine's own matrices
(:func:`passrt.plan.masks.span_matrices`), so the result equals the engine's output on the
same tiles (tests/training/test_common.py checks it) and its gradient reaches ``keep``
(straight-through: a tile is 0/1 forward, the sum of its blocks' keep values backward). A layer
whose tiles are more than ``crossover`` of its grid runs dense, as in the engine.
Steps that are not a conv of the model (the preprocessing multiply/subtract at the input,
pointwise) are covered by mixing the model's input with their tile mask.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from passrt.plan import masks
from passrt.plan.steps import SpatialStep


class ReuseRunner:
    """The frozen ``model`` run as the sparse engine runs it on a plan's ``steps``."""

    def __init__(self, model: nn.Module, steps, frame_hw: tuple[int, int], block: int, crossover: float = 0.6):
        self.model, self.block, self.crossover = model, block, crossover
        self.frame_h, self.frame_w = frame_hw
        modules = dict(model.named_modules())
        self.layers = {}  # conv module label -> (h, w, tile)
        self.input_grid = None  # (h, w, tile) of the pointwise steps on the frame
        for step in steps:
            if not isinstance(step, SpatialStep):
                continue
            _, h, w = step.shape
            if step.label in modules and isinstance(modules[step.label], nn.Conv2d):
                self.layers[step.label] = (h, w, step.tile)
            elif (h, w) == (self.frame_h, self.frame_w):
                self.input_grid = (h, w, step.tile)
            else:
                raise NotImplementedError(f"training the common gate: step '{step.label}' ({type(step).__name__}) "
                                          "is neither a conv nor a pointwise op on the frame; reuse for it is not "
                                          "modelled")
        self._spans = {}

    def labels(self) -> list[str]:
        return list(self.layers)

    def tiles(self, keep: torch.Tensor, h: int, w: int, tile: int) -> torch.Tensor:
        """(1, 1, h, w) cells of the tiles covering a kept block; straight-through gradients."""
        key = (h, w, tile)
        if key not in self._spans:
            self._spans[key] = [m.to(keep.device, keep.dtype)
                                for m in masks.span_matrices(h, w, tile, self.frame_h, self.frame_w, self.block)]
        rows, cols = self._spans[key]
        soft = rows @ keep[0, 0] @ cols
        hard = (soft.detach() > 0).to(keep.dtype)
        if float(hard.mean()) > self.crossover:  # the engine runs such a layer dense (Policy.crossover)
            hard = torch.ones_like(hard)
        t = (hard + soft - soft.detach())[None, None]
        return masks.cells_of(t, tile, h, w)

    def record(self, x: torch.Tensor) -> tuple[object, dict]:
        """(outputs, {conv label: output}) of a dense pass: the caches after a refresh on ``x``."""
        seen = {}

        def hook(label):
            def fn(module, args, out):
                seen[label] = out
            return fn

        with self._hooks(hook):
            outputs = self.model(x)
        return outputs, seen

    def run(self, x: torch.Tensor, ref: torch.Tensor, caches: dict, keep: torch.Tensor):
        """Outputs on ``x`` with the blocks ``keep`` (1, 1, Hb, Wb) recomputed, everything else reused
        from ``caches`` (computed on ``ref``)."""
        def hook(label):
            h, w, tile = self.layers[label]

            def fn(module, args, out):
                m = self.tiles(keep, h, w, tile)
                cache = caches[label].to(out.dtype)
                return cache + m * (out - cache)
            return fn

        if self.input_grid is not None:
            m = self.tiles(keep, *self.input_grid)
            x = ref + m * (x - ref)
        with self._hooks(hook):
            return self.model(x)

    @contextmanager
    def _hooks(self, make):
        modules = dict(self.model.named_modules())
        handles = [modules[label].register_forward_hook(make(label)) for label in self.layers]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
