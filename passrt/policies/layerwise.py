"""``layerwise``: CBinfer/DeltaCNN-style. Each conv compares its input with the values it last
consumed, at the cells its producer rewrote, with a per-layer threshold (``feature_threshold``
times the layer input's mean magnitude on the last refresh); the frame itself is tested as
``exact`` does, by default against the stream's noise level (``threshold="auto"``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

import torch

from passrt.kernels import native
from passrt.plan import masks
from passrt.plan.steps import ConvStep, InputStep, PoolStep, TransposedConvStep
from passrt.policies import noise
from passrt.policies.base import Policy, nonempty
from passrt.policies.exact import Exact, ExactMasks


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

    def mask_source(self, plan) -> "LayerWiseMasks":
        return LayerWiseMasks(plan, self)

    def operating_knob(self):
        return "feature_threshold"  # read on every refresh, which the guard triggers when it tightens

    def frame_stats(self) -> dict:
        return self.input.frame_stats()

    def after_refresh(self, steps, env):
        # Each conv/pool remembers the input it consumed and the scale of its values.
        for step in tested_steps(steps):
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


def tested_steps(steps) -> list:
    """The steps whose input is tested against the values they last consumed: convs, transposed convs and
    pooling that do not read the frame itself (the frame is tested as exact tests it)."""
    producers = {s.name: s for s in steps}
    return [s for s in steps if isinstance(s, (ConvStep, TransposedConvStep, PoolStep))
            and not isinstance(producers[s.srcs[0]], InputStep)]


class LayerWiseMasks(ExactMasks):
    """layerwise's rule for one plan as standard tensor ops (the op executor): exact's frame test, then at
    each tested step its input's rewritten cells compared with the values it last consumed. States: exact's,
    and per tested step that reference value and its threshold (set on every refresh from the value's mean
    magnitude, as :meth:`LayerWise.after_refresh` sets them). A step's rewritten cells are its active tiles'
    (all of them above the crossover), as :meth:`LayerWise.step_done` marks them."""

    def __init__(self, plan, policy: LayerWise):
        super().__init__(plan, policy.input)
        self.feature_threshold = policy.feature_threshold
        self.tested = {s.name: s for s in tested_steps(plan.steps)}
        shapes = {s.name: tuple(s.shape) for s in plan.steps if hasattr(s, "shape")}
        self.n_frame_states = len(self.state_keys)
        for name, step in self.tested.items():
            self.state_keys += [f"layer_ref.{name}", f"layer_threshold.{name}"]
            self.state_shapes += [(1, *shapes[step.srcs[0]]), (1,)]

    def begin(self, image, refresh, states, in_place: bool = False):
        layer = states[self.n_frame_states:]
        self._refs = {name: (layer[2 * i], layer[2 * i + 1]) for i, name in enumerate(self.tested)}
        self._new: dict = {}
        self._in_place = in_place
        return super().begin(image, refresh, states[:self.n_frame_states], in_place)

    def input_maps(self, step, value) -> list:
        maps = super().input_maps(step, value)
        if step.name in self.tested:  # of the cells its producer rewrote, those that moved past the threshold
            x, (ref, threshold) = value(step.srcs[0]), self._refs[step.name]
            if self._in_place and native.row_matrices_ok(x, ref):
                maps[0] = self._test_in_place(x, ref, threshold, maps[0])
                return maps
            full = self.full.reshape(1, 1, 1, 1)
            own = maps[0] * ((x - ref).abs().amax(1, keepdim=True) > threshold).float()
            maps[0] = torch.maximum(own, full)
            self._new[step.name] = (torch.where((own + full) > 0, x, ref),
                                    torch.where(self.full > 0, self.feature_threshold * x.abs().mean().reshape(1),
                                                threshold))
        return maps

    def _test_in_place(self, x, ref, threshold, rewritten) -> torch.Tensor:
        """The same test on the eager CPU path, as :meth:`LayerWise.step_tiles` runs it: only the rewritten
        cells are compared, in passrt's kernel, and the reference and threshold change in place."""
        if float(self.full) > 0:
            ref.copy_(x)
            threshold.fill_(self.feature_threshold * float(x.abs().mean()))
            return torch.ones_like(rewritten)
        height, width = x.shape[2:]
        rows = rewritten.reshape(-1).nonzero().reshape(-1)
        own = native.row_changes_(native.row_matrix(ref), native.row_matrix(x), rows, float(threshold),
                                  height * width)
        return own.view(1, 1, height, width)

    def step_mask(self, step, value):
        mask = super().step_mask(step, value)
        self._changed[step.name] = masks.cells_of(mask, step.tile, *step.shape[1:])
        return mask

    def end(self) -> list:
        return [t for name in self.tested for t in self._new.get(name, self._refs[name])]

