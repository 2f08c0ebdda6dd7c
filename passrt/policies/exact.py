"""``exact``: the input change (per pixel, max over channels, above ``threshold``) pushed through
every layer's receptive field. With threshold 0 (the default) the output equals the dense
output; with a positive threshold the error stays bounded (see ``begin_frame``);
``threshold="auto"`` makes it ``noise_multiple`` times the stream's noise level
(:mod:`passrt.policies.noise`), the same bound relative to the camera's own noise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch

from passrt.plan import masks
from passrt.policies import noise
from passrt.policies.base import CUT_BLOCK, MaskSource, Policy, native_frame_ok

NOISE_BLOCK, NOISE_RANK = 16, 8  # the noise statistic: 8th-largest change in 16x16 blocks (as regiondrop's)
STALE_MEASURE_EVERY = 4  # while the dense engine answers, the noise is measured on every 4th frame


@dataclass
class Exact(Policy):
    name = "exact"
    threshold: Union[float, str] = 0.0
    noise_multiple: float = 4.0
    noise_floor: float = 1 / 255
    max_threshold: float = 0.1  # an "auto" threshold never exceeds this

    def __post_init__(self):
        self.reset()

    def reset(self):
        self.ref: Optional[torch.Tensor] = None
        self.prevs: list = []  # the two previous frames, newest first (threshold="auto")
        self.level = torch.zeros(1)
        self.stale_frames = 0  # consecutive frames tested while the caches were stale

    def begin_frame(self, ctx, x, refresh):
        prevs = self.prevs
        dense = self._test(ctx, x, refresh, prevs)
        if noise.is_auto(self.threshold):  # measured: the oldest frame's buffer takes this frame
            oldest = prevs[1] if len(prevs) == 2 and prevs[1].shape == x.shape else None
            self.prevs = [oldest.copy_(x) if oldest is not None else x.clone()] + prevs[:1]
        return dense

    def _test(self, ctx, x, refresh, prevs) -> bool:
        """The frame's change test against the reference (``prevs``: the two previous frames); True: dense."""
        native = _native(ctx, x)
        if refresh or self.ref is None or self.ref.shape != x.shape:
            self.ref = x.clone()
            return True
        auto, limit, measured = noise.is_auto(self.threshold), self.threshold, None

        def measure():
            if len(prevs) < 2 or prevs[1].shape != x.shape:
                return torch.zeros(1)
            return noise.frame_noise(x, prevs[0], prevs[1], NOISE_BLOCK, NOISE_RANK, self.noise_floor,
                                     native and native.block_rank_changes)[0]

        if auto:
            # Once the level is known it alone sets the threshold, and a measurement can only update it on a
            # frame found mostly static (noise.update_level): a moving camera's frames skip the measurement.
            measured = None if float(self.level) > 0 else measure()
            limit = float(noise.threshold(self.level, torch.zeros(1) if measured is None else measured,
                                          self.noise_multiple, self.noise_floor, self.max_threshold))
        if native is not None:  # one pass: the change map, and the reference moved where it changed
            changed = native.pixel_changes_(self.ref, x, limit)
        else:
            changed = (masks.pixel_change(x, self.ref) > limit).float()
        ctx.input_fraction = float(masks.to_tiles(changed, CUT_BLOCK).mean())
        # While the dense engine answers the frames (the caches stale: ReferenceExecutor.begin) a known level is
        # measured on every STALE_MEASURE_EVERY-th frame only: the measurement costs more than the rest of the
        # test (7 ms at 1280x720 on one thread), but a level never updated there could hold a threshold that
        # keeps every frame the engine's (sports2d's layerwise did: 148 of 150 frames instead of 63).
        self.stale_frames = self.stale_frames + 1 if ctx.caches_stale else 0
        if (auto and measured is None and ctx.input_fraction < noise.STATIC
                and self.stale_frames % STALE_MEASURE_EVERY == 0):
            measured = measure()
        if measured is not None:
            self.level = noise.update_level(self.level, measured, torch.tensor([ctx.input_fraction]), torch.zeros(1))
        if ctx.input_fraction > self.scene_cut:
            self.ref.copy_(x)
            return True
        # The reference moves only where a change was detected (and every output reading it
        # is recomputed), so each cached value was computed from inputs within `threshold`
        # of the reference, which is within `threshold` of the current frame: the input
        # error is at most 2 * threshold per pixel, on every frame, with no drift.
        if native is None:
            self.ref = torch.where(changed.bool(), x, self.ref)
        ctx.changed[ctx.input_name] = changed if ctx.input_fraction > 0 else None  # a changed pixel marks its block
        return False

    def operating_knob(self):
        return noise.threshold_knob(self.threshold)

    def mask_source(self, plan) -> "ExactMasks":
        return ExactMasks(plan, self)

    def frame_stats(self) -> dict:
        return {"noise_level": float(self.level)} if noise.is_auto(self.threshold) else {}


class ExactMasks(MaskSource):
    """exact's rule for one plan as standard tensor ops (the op executor, `passrt export`): the frame's
    per-pixel change against the reference, pushed through each step's receptive field. States: the reference;
    with ``threshold="auto"`` also the two previous frames, the noise level and how many frames have been seen
    since the first (the eager rule measures no noise until it has two previous frames).

    The eager rule (:meth:`Exact.begin_frame`, the base step_tiles) decides the same tiles, except where a
    spatial step reads a value made by a non-spatial step: the eager executor knows whether that value
    changed this frame, these ops take it as changed (same outputs, more tiles recomputed)."""

    def __init__(self, plan, policy: Exact):
        super().__init__(policy.crossover)
        self.plan, self.p = plan, policy
        self.auto = noise.is_auto(policy.threshold)
        self.state_keys, self.state_shapes = ["ref"], [plan.input_shape]
        if self.auto:
            self.state_keys += ["prev", "prev2", "noise_level", "frames_seen"]
            self.state_shapes += [plan.input_shape, plan.input_shape, (1,), (1,)]

    def in_place_ok(self, image) -> bool:
        return native_frame_ok(image, NOISE_BLOCK)

    def begin(self, image, refresh, states, in_place: bool = False):
        """The new frame states. ``in_place``: the eager CPU path (see RegionDropMasks.begin): the change map
        and the noise statistic in passrt's kernels, the reference moved and the previous frames rotated
        in their own buffers."""
        p, ref = self.p, states[0]
        if in_place:
            from passrt.kernels import native
        else:
            image = image.contiguous()  # the states' layout: every full-frame op below runs on contiguous operands
        refresh = refresh.reshape(1)
        limit = torch.full((1,), float(p.threshold) if not self.auto else 0.0, device=image.device)
        if self.auto:
            prev, prev2, level, seen = states[1:]
            measured, _ = noise.frame_noise(image, prev, prev2, NOISE_BLOCK, NOISE_RANK, p.noise_floor,
                                            native.block_rank_changes if in_place else None)
            measured = torch.where(seen >= 2, measured, torch.zeros_like(measured))
            limit = noise.threshold(level, measured, p.noise_multiple, p.noise_floor, p.max_threshold)
        if in_place:  # the reference moves where the pixel changed, in the same pass
            changed = native.pixel_changes_(ref, image, float(limit))
        else:
            changed = (masks.pixel_change(image, ref) > limit.reshape(1, 1, 1, 1)).float()
        fraction = masks.to_tiles(changed, CUT_BLOCK).mean().reshape(1)
        self.full = torch.maximum(refresh, (fraction > p.scene_cut).float())
        self._changed = {self.plan.input_name: torch.maximum(changed, self.full.reshape(1, 1, 1, 1))}
        if in_place:
            new_ref = ref.copy_(image) if float(self.full) > 0 else ref
        else:
            new_ref = torch.where((changed + self.full.reshape(1, 1, 1, 1)) > 0, image, ref)
        if not self.auto:
            return [new_ref]
        level = noise.update_level(level, measured, fraction, refresh)
        newest = prev2.copy_(image) if in_place else image.clone()  # in place: the oldest frame's buffer
        return [new_ref, newest, prev, level, torch.clamp(seen + 1, max=2.0)]

    def input_maps(self, step, value) -> list:
        """The change maps of what ``step`` reads (``step.input_refs()``)."""
        maps = []
        for name, broadcast in step.input_refs():
            m = None if broadcast else self._changed.get(name)
            if m is None:  # a per-channel broadcast, or a value a non-spatial step made: changed
                m = torch.ones(1, 1, *(step.shape[1:] if broadcast else value(name).shape[2:]), device=self.full.device)
            maps.append(m)
        return maps

    def step_mask(self, step, value):
        changed = torch.maximum(step.propagate(self.input_maps(step, value)), self.full.reshape(1, 1, 1, 1))
        self._changed[step.name] = changed
        return self.finish(masks.to_tiles(changed, step.tile)[0, 0])


def _native(ctx, x: torch.Tensor):
    """passrt's kernels (passrt.kernels.native: the noise statistic and the change map, each equal to the
    tensor ops, one pass) when the executor runs the native kernels and the frame is a float32 CPU frame at
    least a noise block in size; else None."""
    if not ctx.native or x.device.type != "cpu" or x.dtype != torch.float32 or min(x.shape[2:]) < NOISE_BLOCK:
        return None
    from passrt.kernels import native

    return native
