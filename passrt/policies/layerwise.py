"""``layerwise``: CBinfer/DeltaCNN-style. Each conv compares its input with the values it last
consumed, at the cells its producer rewrote, with a per-layer threshold (``feature_threshold``
times the layer input's mean magnitude on the last refresh); the frame itself is tested as
``exact`` does, by default against the stream's noise level (``threshold="auto"``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch

from passrt.plan import masks
from passrt.plan.steps import ConvStep, InputStep, PoolStep, TransposedConvStep
from passrt.policies import noise
from passrt.policies.base import Policy, nonempty
from passrt.policies.exact import Exact


@dataclass
class LayerWise(Policy):
    name = "layerwise"
    threshold: Union[float, str] = noise.AUTO
    noise_multiple: float = 4.0
    noise_floor: float = 1 / 255
    max_threshold: float = 0.1  # an "auto" threshold never exceeds this
    feature_threshold: float = 0.05

    def __post_init__(self):
        self.input = Exact(threshold=self.threshold, noise_multiple=self.noise_multiple, noise_floor=self.noise_floor,
                           max_threshold=self.max_threshold, scene_cut=self.scene_cut)
        self.refs: dict[str, torch.Tensor] = {}
        self.thresholds: dict[str, float] = {}

    def reset(self):
        self.input.reset()
        self.refs, self.thresholds = {}, {}

    def begin_frame(self, ctx, x, refresh):
        return self.input.begin_frame(ctx, x, refresh)

    def operating_knob(self):
        return "feature_threshold"  # read on every refresh, which the guard triggers when it tightens

    def frame_stats(self) -> dict:
        return self.input.frame_stats()

    def after_refresh(self, steps, env):
        # Each conv/pool remembers the input it consumed and the scale of its values.
        producers = {s.name: s for s in steps}
        for step in steps:
            if isinstance(step, (ConvStep, TransposedConvStep, PoolStep)) and not isinstance(producers[step.srcs[0]], InputStep):
                src, ref = env[step.srcs[0]], self.refs.get(step.name)
                # Into the buffer of the last refresh: a fresh clone of every layer's input faults in as much
                # memory again on each refresh.
                self.refs[step.name] = ref.copy_(src.rows) if ref is not None and ref.shape == src.rows.shape \
                    else src.rows.clone()
                scale = float(src.rows[: src.cells].abs().mean())
                self.thresholds[step.name] = self.feature_threshold * scale

    def step_tiles(self, step, ctx):
        maps = ctx.src_maps(step)
        ref = self.refs.get(step.name)
        if ref is not None and maps[0] is not None:
            # Test only the cells the producer rewrote this frame: nothing else can have changed.
            src = ctx.env[step.srcs[0]]
            rows = maps[0].reshape(-1).nonzero().reshape(-1)
            if ctx.native and src.rows.dtype == torch.float32:  # passrt's kernel: the same test, one pass
                from passrt.kernels import native

                own = native.row_changes_(ref, src.rows, rows, self.thresholds[step.name], src.cells)
            else:
                diff = (src.rows[rows] - ref[rows]).abs().amax(1)
                flagged = rows[diff > self.thresholds[step.name]]
                ref[flagged] = src.rows[flagged]
                own = torch.zeros(src.cells)
                own[flagged] = 1.0
            maps[0] = nonempty(own.view(1, 1, src.height, src.width))
        changed = nonempty(step.propagate(maps))
        return masks.to_tiles(changed, step.tile) if changed is not None else None

    def step_done(self, step, ctx, tiles, dense):
        # Downstream tests look at the cells this step rewrote.
        if dense:
            ctx.changed[step.name] = torch.ones(1, 1, step.shape[1], step.shape[2])
        elif tiles is None:
            ctx.changed[step.name] = None
        else:
            ctx.changed[step.name] = masks.cells_of(tiles, step.tile, step.shape[1], step.shape[2])
