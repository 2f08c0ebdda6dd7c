"""``regiondrop``: the published Temporal RegionDrop. One tile mask per frame from the input
difference, reused, rescaled, by every layer.

The rule, written once (:class:`RegionDropMasks`, standard tensor ops, so it exports to ONNX and
runs on any device without host synchronisation): a pixel changed when max over channels
``|x - ref| > threshold``; by default (``threshold="auto"``) the threshold is ``noise_multiple``
times the stream's noise level, measured online (:mod:`passrt.policies.noise`), a number
given instead is an absolute threshold; a ``block`` x ``block`` block changed when at least
``min_pixels`` of its pixels did (robust to compression noise); the block mask is dilated by ``margin`` blocks
(a change reaches neighbouring outputs through receptive fields), and with ``cell_margin`` also by
``margin`` of its own cells on a layer whose cells are wider than a block (its 3x3 windows read a
whole cell either side, which a margin of 16 input pixels does not cover; opt-in, see the field);
more than ``scene_cut`` of
the blocks changed is a scene cut (dense refresh); the reference ``ref`` moves only inside the
changed blocks; each layer's tiles are the tiles that cover a changed block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn.functional as F

from passrt.plan.steps import SpatialStep
from passrt.plan import masks
from passrt.policies import noise
from passrt.policies.base import FrameContext, MaskSource, Policy, native_frame_ok, nonempty


@dataclass
class RegionDrop(Policy):
    name = "regiondrop"
    common_tiles = True
    threshold: Union[float, str] = noise.AUTO  # "auto": noise_multiple x the stream's noise level
    noise_multiple: float = 4.0
    noise_floor: float = 1 / 255  # the noise level is at least this (one 8-bit step of a [0, 1] input)
    max_threshold: float = 0.1  # an "auto" threshold never exceeds this
    block: int = 16
    min_pixels: int = 8
    margin: int = 1
    # On layers whose cells are wider than a block, the margin is also `margin` of their cells. Off by default:
    # on sports2d it raised AP50@thr 0.79 -> 0.89, on pose2sim it lowered AP50 0.968 -> 0.956 (a coarse cell
    # recomputed from neighbours its finer layers kept stale), and it costs 25-36 % more MACs on fixed cameras
    # (benchmarks/RESULTS.md, "the cell margin").
    cell_margin: bool = False

    def __post_init__(self):
        self.states: Optional[list] = None  # the mask source's states: [ref] (+ [prev, prev2, level] if auto)
        self.masks: Optional[RegionDropMasks] = None  # the mask source of the current plan
        self._last_mask = (None, None)  # (a step's mask, the same if it has a tile, else None)
        self._in_place = False  # the states are updated in place by the native kernels

    def reset(self):
        self.states = None

    @property
    def ref(self) -> Optional[torch.Tensor]:
        """The reference frame: each block as it was when last found changed."""
        return None if self.states is None else self.states[0]

    def mask_source(self, plan) -> "RegionDropMasks":
        return RegionDropMasks(plan, self)

    def begin_frame(self, ctx, x, refresh):
        if self.masks is None or self.masks.plan is not ctx.plan:
            self.masks = self.mask_source(ctx.plan)
        source = self.masks
        in_place = ctx.native and source.in_place_ok(x)
        if self.states is None or self.states[0].shape != x.shape or self._in_place != in_place:
            self.states = source.initial_states(x, like_image=in_place)
            self._in_place = in_place
            refresh = True
        self.states = source.begin(x, x.new_full((1,), float(refresh)), self.states, in_place)
        ctx.input_fraction = float(source.fraction)
        if bool(source.full):
            return True
        # Only dense steps look at the input's change map (whether anything changed).
        ctx.changed[ctx.input_name] = FrameContext.FULL if bool(source.blocks.any()) else None
        return False

    def operating_knob(self):
        return noise.threshold_knob(self.threshold)

    def frame_stats(self) -> dict:
        if self.masks is None or not self.masks.adaptive or self.states is None:
            return {}
        return {"noise_level": float(self.states[3])}

    def step_tiles(self, step, ctx):
        if ctx.changed.get(ctx.input_name) is None:
            return None
        tiles = self.masks.step_mask(step, ctx.value, eager=True)
        if tiles is not self._last_mask[0]:  # layers on one tile grid share a mask: test it once
            self._last_mask = (tiles, nonempty(tiles))
        tiles = self._last_mask[1]
        ctx.changed[step.name] = FrameContext.FULL if tiles is not None else None
        return tiles


class RegionDropMasks(MaskSource):
    """RegionDrop's rule for one plan (states: the reference frame; with ``threshold="auto"`` also
    the two previous frames and the noise level)."""

    def __init__(self, plan, policy: RegionDrop):
        super().__init__(policy.crossover)
        self.plan, self.p = plan, policy
        self.adaptive = noise.is_auto(policy.threshold)
        _, _, self.frame_h, self.frame_w = plan.input_shape
        self.state_keys, self.state_shapes = ["ref"], [plan.input_shape]
        if self.adaptive:
            self.state_keys += ["prev", "prev2", "noise_level"]
            self.state_shapes += [plan.input_shape, plan.input_shape, (1,)]
        for step in plan.steps:
            if isinstance(step, SpatialStep):
                self.tiles(*step.shape[1:], step.tile)  # registers the step's rescale matrices

    def initial_states(self, image, like_image: bool = False) -> list:
        """Zeros; ``like_image``: frame-shaped states in the frame's memory layout (the native path)."""
        return [torch.zeros_like(image) if like_image and tuple(shape) == tuple(image.shape)
                else image.new_zeros(shape) for shape in self.state_shapes]

    def in_place_ok(self, image) -> bool:
        """Whether the native kernels can run this frame's rule (a float32 CPU frame at least a block
        in size, and the op loaded)."""
        return native_frame_ok(image, self.p.block)

    def begin(self, image, refresh, states, in_place: bool = False):
        """The new states. ``in_place``: the eager CPU path, where the policy owns its states: the three
        full-frame operations run in passrt's kernels (one pass each, equal to the tensor ops below),
        the reference is updated in place in the changed blocks and the previous frames rotate through
        the same buffers. Otherwise standard tensor ops only (the exported graph, the op executor)."""
        p, ref = self.p, states[0]
        if in_place:
            from passrt.kernels import native
        else:
            # One copy into the states' layout (a decoded frame is often channels-last): every full-frame
            # op below then runs on contiguous operands, several times faster than on mixed layouts.
            frame, image = image, image.contiguous()
        refresh = refresh.reshape(1)
        if self.adaptive:
            prev, prev2, level = states[1], states[2], states[3]

            def measure():
                return noise.frame_noise(image, prev, prev2, p.block, p.min_pixels, p.noise_floor,
                                         native.block_rank_changes if in_place else None)[0]

            # The eager path measures only where the measurement is used: while the level is unknown (it
            # sets the threshold) and on frames that may update the level (below noise.STATIC changed, not a
            # refresh), below; noise.update_level ignores it on the others, so the states equal the traced
            # rule's, which measures every frame. A moving camera's frames skip it (7 ms at 1280x720).
            measured = None if in_place and float(level) > 0 else measure()
            limit = noise.threshold(level, torch.zeros_like(level) if measured is None else measured,
                                    p.noise_multiple, p.noise_floor, p.max_threshold)
        else:
            limit = p.threshold
        changed_blocks = self.changed_blocks(image, ref, limit, in_place)
        blocks = masks.dilate(changed_blocks, p.margin)
        self.fraction = blocks.mean().reshape(1)
        # Compared in float32, on every device and in the exported graph alike.
        self.full = torch.maximum(refresh, (self.fraction > p.scene_cut).float())
        self.blocks = blocks[0, 0]
        self._per_grid = {}
        # The reference moves only inside the changed blocks, not the margin: a margin block's own
        # slow change must keep adding up against the reference until it is found changed (else it
        # is absorbed frame by frame, and the outputs beyond the margin that read it drift).
        moved = torch.maximum(changed_blocks, self.full.reshape(1, 1, 1, 1))
        if in_place:
            new_ref = native.copy_blocks_(ref, image, moved, p.block)
        else:
            # lerp with a 0/1 weight returns exactly ref or image (PyTorch's two-sided formula), and runs
            # several times faster than torch.where on CPU.
            new_ref = torch.lerp(ref, image, masks.cells_of(moved, p.block, self.frame_h, self.frame_w))
        if not self.adaptive:
            return [new_ref]
        if measured is None:
            usable = float(self.fraction) < noise.STATIC and not float(refresh)
            measured = measure() if usable else torch.zeros_like(level)
        self.level = noise.update_level(level, measured, self.fraction, refresh)
        if in_place:  # the oldest frame's buffer takes this frame
            return [new_ref, prev2.copy_(image), prev, self.level]
        # The caller owns its frame: keep a copy (contiguous() may have made one already).
        return [new_ref, image.clone() if image is frame else image, prev, self.level]

    def changed_blocks(self, image, ref, limit, in_place: bool) -> torch.Tensor:
        """(1, 1, Hb, Wb) 0/1: the blocks found changed on this frame (RegionDrop's test: at least
        ``min_pixels`` pixels whose change is over ``limit``, a number or a (1,) tensor). The one decision
        a subclass replaces (PASS's common gate); everything around it is the rule's bookkeeping."""
        p = self.p
        if in_place:
            from passrt.kernels import native

            counts = native.block_change_counts(image, ref, float(limit), p.block)
        else:
            limit = limit.reshape(1, 1, 1, 1) if isinstance(limit, torch.Tensor) else limit
            changed = (masks.pixel_change(image, ref) > limit).float()
            counts = F.avg_pool2d(changed, p.block, p.block, ceil_mode=True) * (p.block ** 2)
        return (counts >= p.min_pixels).float()

    def step_mask(self, step, value, eager: bool = False):
        """The step's tiles. ``eager``: for an eager executor (RegionDrop.step_tiles), which asks only on frames
        that are not full and applies the crossover itself, so the tiles skip :meth:`finish` (six tensor ops
        per tile grid, a few tenths of a ms per frame)."""
        key = (step.shape[1], step.shape[2], step.tile)
        if key not in self._per_grid:
            tiles = self.tiles(*key, self.blocks)
            if self.coarse(*key):
                tiles = masks.dilate(tiles[None, None], self.p.margin)[0, 0]
            self._per_grid[key] = tiles.reshape(1, 1, *tiles.shape) if eager else self.finish(tiles)
        return self._per_grid[key]

    def coarse(self, h: int, w: int, tile: int) -> bool:
        """Whether the margin is dilated again on this layer's tile grid (``cell_margin``): its tiles
        are one cell each and wider than a block, so the block margin covers less than one cell."""
        return bool(self.p.cell_margin) and tile == 1 and max(self.frame_h / h, self.frame_w / w) > self.p.block

    def tiles(self, h: int, w: int, tile: int, blocks=None) -> torch.Tensor:
        """``blocks`` (default: none active) on the tile grid of an (h, w) layer with ``tile``-cell tiles."""
        if blocks is None:
            blocks = torch.zeros(-(-self.frame_h // self.p.block), -(-self.frame_w // self.p.block))
        return self.rescale((h, w, tile), blocks, h, w, tile, self.frame_h, self.frame_w, self.p.block)
