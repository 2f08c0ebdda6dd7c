"""Mask policies: which tiles of which layer to recompute on each frame.

- :class:`Dense`: everything, every frame (the engine's own dense path).
- :class:`Exact`: the input change (per pixel, max over channels, above ``threshold``)
  pushed through every layer's receptive field. With threshold 0 the output equals the
  dense output; with a positive threshold the error stays bounded (see ``begin_frame``).
- :class:`RegionDrop`: the published Temporal RegionDrop: one tile mask computed once per
  frame from the input difference (noise-robust: a block counts as changed only when at
  least ``min_pixels`` of its pixels changed), dilated by ``margin`` blocks, and reused,
  rescaled, by every layer.
- :class:`LayerWise`: CBinfer/DeltaCNN-style: each conv compares its input with the values
  it last consumed, at the cells its producer rewrote, with a per-layer threshold
  (``feature_threshold`` times the layer input's mean magnitude on the last refresh).

All policies share the engine-side rules: a frame is a *refresh* (everything dense) on the
first frame, after ``reset()``, on a resolution change, every ``refresh_every`` frames if
set, and on a scene cut (more than ``scene_cut`` of the input's 16x16 blocks changed); a
layer whose active tile fraction is above ``crossover`` runs dense.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import torch
import torch.nn.functional as F

from passrt.engine import masks
from passrt.engine.steps import ConvStep, InputStep, PoolStep, SpatialStep
from passrt.errors import PassrtError

_CUT_BLOCK = 16  # block size (pixels) used to measure the changed fraction for scene cuts


class FrameContext:
    """Per-frame state shared by the engine and the policy."""

    FULL = "full"  # marker: a dense value was recomputed (it may have changed anywhere)

    def __init__(self, env: dict, input_name: str):
        self.env, self.input_name = env, input_name
        self.changed: dict[str, object] = {}  # value name -> change map, FULL, or None
        self.input_fraction = 0.0

    def src_maps(self, step: SpatialStep) -> list[Optional[torch.Tensor]]:
        """Change maps of a step's inputs, each on that input's own grid."""
        out = []
        for name, broadcast in step.input_refs():
            m = self.changed.get(name)
            if m is not None and (broadcast or m is self.FULL):
                if broadcast:
                    h, w = step.shape[1], step.shape[2]
                else:
                    fm = self.env[name]
                    h, w = fm.height, fm.width
                m = torch.ones(1, 1, h, w)
            out.append(m)
        return out


@dataclass
class Policy:
    """Parameters shared by every policy (see the module docstring)."""

    name = "policy"
    tile_px: int = 16  # a layer's tile covers about this many input pixels ...
    # ... but at least this many output cells per side. 1 on the CPU backend: a 1x1 conv is
    # a GEMM over gathered rows whatever the tile size, so small tiles only cost halo in
    # depthwise convs, and on SSDLite at 768x576 that is cheaper than recomputing 2x2-cell
    # (64 px) tiles in the stride-32 layers (measured: benchmarks/RESULTS.md).
    min_tile: int = 1
    max_tile: int = 8  # ... and at most this many
    crossover: float = 0.6
    scene_cut: float = 0.6
    refresh_every: Optional[int] = None

    def tile_for(self, stride: int) -> int:
        return max(self.min_tile, min(self.max_tile, self.tile_px // stride))

    def reset(self) -> None:
        pass

    def begin_frame(self, ctx: FrameContext, x: torch.Tensor, refresh: bool) -> bool:
        """Compute the input's change; return True if this frame must be a dense refresh."""
        raise NotImplementedError

    def step_tiles(self, step: SpatialStep, ctx: FrameContext) -> Optional[torch.Tensor]:
        """Tile mask (1, 1, Ht, Wt) of ``step`` for this frame, or None when nothing is active."""
        changed = _nonempty(step.propagate(ctx.src_maps(step)))
        ctx.changed[step.name] = changed
        return masks.to_tiles(changed, step.tile) if changed is not None else None

    def step_done(self, step: SpatialStep, ctx: FrameContext, tiles, dense: bool) -> None:
        pass

    def after_refresh(self, steps, env) -> None:
        pass

    def overhead_macs(self) -> float:
        """MACs the policy itself spent on the last frame (e.g. learned gates); counted in stats()."""
        return 0.0

    def frame_stats(self) -> dict:
        """Policy-specific figures of the last frame, merged into SparseModel.stats()."""
        return {}

    def describe(self) -> dict:
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in fields(self)}}


def _nonempty(m):
    return m if m is not None and bool(m.any()) else None


class Dense(Policy):
    name = "dense"

    def begin_frame(self, ctx, x, refresh):
        return True


@dataclass
class Exact(Policy):
    name = "exact"
    threshold: float = 0.0

    def __post_init__(self):
        self.ref: Optional[torch.Tensor] = None

    def reset(self):
        self.ref = None

    def begin_frame(self, ctx, x, refresh):
        if refresh or self.ref is None or self.ref.shape != x.shape:
            self.ref = x.clone()
            return True
        changed = (masks.pixel_change(x, self.ref) > self.threshold).float()
        ctx.input_fraction = float(masks.to_tiles(changed, _CUT_BLOCK).mean())
        if ctx.input_fraction > self.scene_cut:
            self.ref.copy_(x)
            return True
        # The reference moves only where a change was detected (and every output reading it
        # is recomputed), so each cached value was computed from inputs within `threshold`
        # of the reference, which is within `threshold` of the current frame: the input
        # error is at most 2 * threshold per pixel, on every frame, with no drift.
        self.ref = torch.where(changed.bool(), x, self.ref)
        ctx.changed[ctx.input_name] = _nonempty(changed)
        return False


@dataclass
class RegionDrop(Policy):
    name = "regiondrop"
    # Defaults chosen on vtest.avi (benchmarks/RESULTS.md): its compression noise changes
    # ~60 % of blocks at threshold 0; requiring 8 pixels above 0.1 in a 16x16 block keeps
    # people and ignores noise, at mAP@0.5 agreement >= 0.98 with dense.
    threshold: float = 0.1
    block: int = 16
    min_pixels: int = 8
    margin: int = 1

    def __post_init__(self):
        self.ref: Optional[torch.Tensor] = None
        self._per_grid: dict = {}

    def reset(self):
        self.ref = None

    def begin_frame(self, ctx, x, refresh):
        self._per_grid = {}
        if refresh or self.ref is None or self.ref.shape != x.shape:
            self.ref = x.clone()
            return True
        changed = (masks.pixel_change(x, self.ref) > self.threshold).float()
        counts = F.avg_pool2d(changed, self.block, self.block, ceil_mode=True) * (self.block ** 2)
        blocks = masks.dilate((counts >= self.min_pixels).float(), self.margin)
        fraction = blocks.mean()
        ctx.input_fraction = float(fraction)
        if bool(fraction > self.scene_cut):  # in float32, as the exported graph compares
            self.ref.copy_(x)
            return True
        if not bool(blocks.any()):
            return False
        region = masks.from_tiles(blocks, self.block, x.shape[2], x.shape[3])
        self.ref.lerp_(x, region)  # region is 0/1: the reference moves only inside it
        self._grid = masks.BlockGrid(blocks, self.block, x.shape[2], x.shape[3])
        ctx.changed[ctx.input_name] = region
        return False

    def step_tiles(self, step, ctx):
        if ctx.changed.get(ctx.input_name) is None:
            return None
        key = (step.shape[1], step.shape[2], step.tile)
        if key not in self._per_grid:
            self._per_grid[key] = _nonempty(self._grid.tiles_for(*key))
        tiles = self._per_grid[key]
        # Only dense steps look at this (whether anything changed): the common mask needs no map.
        ctx.changed[step.name] = FrameContext.FULL if tiles is not None else None
        return tiles


@dataclass
class LayerWise(Policy):
    name = "layerwise"
    threshold: float = 0.08
    feature_threshold: float = 0.05

    def __post_init__(self):
        self.input = Exact(threshold=self.threshold, scene_cut=self.scene_cut)
        self.refs: dict[str, torch.Tensor] = {}
        self.thresholds: dict[str, float] = {}

    def reset(self):
        self.input.reset()
        self.refs, self.thresholds = {}, {}

    def begin_frame(self, ctx, x, refresh):
        return self.input.begin_frame(ctx, x, refresh)

    def after_refresh(self, steps, env):
        # Each conv/pool remembers the input it consumed and the scale of its values.
        for step in steps:
            if isinstance(step, (ConvStep, PoolStep)) and not isinstance(
                    _producer_step(steps, step.srcs[0]), InputStep):
                src = env[step.srcs[0]]
                self.refs[step.name] = src.rows.clone()
                scale = float(src.rows[: src.cells].abs().mean())
                self.thresholds[step.name] = self.feature_threshold * scale

    def step_tiles(self, step, ctx):
        maps = ctx.src_maps(step)
        ref = self.refs.get(step.name)
        if ref is not None and maps[0] is not None:
            # Test only the cells the producer rewrote this frame: nothing else can have changed.
            src = ctx.env[step.srcs[0]]
            rows = maps[0].reshape(-1).nonzero().reshape(-1)
            diff = (src.rows[rows] - ref[rows]).abs().amax(1)
            flagged = rows[diff > self.thresholds[step.name]]
            ref[flagged] = src.rows[flagged]
            own = torch.zeros(src.cells)
            own[flagged] = 1.0
            maps[0] = _nonempty(own.view(1, 1, src.height, src.width))
        changed = _nonempty(step.propagate(maps))
        return masks.to_tiles(changed, step.tile) if changed is not None else None

    def step_done(self, step, ctx, tiles, dense):
        # Downstream tests look at the cells this step rewrote.
        if dense:
            ctx.changed[step.name] = torch.ones(1, 1, step.shape[1], step.shape[2])
        elif tiles is None:
            ctx.changed[step.name] = None
        else:
            ctx.changed[step.name] = masks.from_tiles(tiles, step.tile, step.shape[1], step.shape[2])


def _producer_step(steps, name):
    return next(s for s in steps if s.name == name)


POLICIES = {p.name: p for p in (Dense, Exact, RegionDrop, LayerWise)}  # the training-free ones


def registry() -> dict:
    """Every policy by name: the training-free ones and PASS's learned gates ('pass')."""
    from passrt.gates.policy import PassGates  # lives with the gates; imported on first use

    return {**POLICIES, PassGates.name: PassGates}


def make_policy(spec, **params) -> Policy:
    """A policy from a name ('dense', 'exact', 'regiondrop', 'layerwise', 'pass') and parameters, or as given."""
    if isinstance(spec, Policy):
        if params:
            raise PassrtError("parameters can only be given with a policy name")
        return spec
    policies = registry()
    if spec not in policies:
        raise PassrtError(f"unknown policy '{spec}'; choose one of: {', '.join(policies)}")
    cls = policies[spec]
    known = {f.name for f in fields(cls)}
    unknown = set(params) - known
    if unknown:
        raise PassrtError(f"policy '{spec}' has no parameter {', '.join(sorted(unknown))}; "
                          f"it takes: {', '.join(sorted(known))}")
    defaults = {f.name: f.default for f in fields(cls)}
    return cls(**{k: _typed(spec, k, v, defaults[k]) for k, v in params.items()})


def _typed(policy: str, name: str, value, default):
    """Check a parameter against its default's type (ints may be given for floats)."""
    if default is None or value is None:
        return value
    kind = type(default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or isinstance(value, bool) != isinstance(default, bool):
        raise PassrtError(f"policy '{policy}': parameter {name} must be {kind.__name__}, got {value!r}")
    return value
