"""What every policy shares: the per-frame context, the Policy interface, and mask sources.

A policy answers, frame by frame, which tiles of which layer to recompute. The eager engine
asks it through :meth:`Policy.begin_frame` and :meth:`Policy.step_tiles`. A policy whose masks
are standard tensor ops of the frame and a small state (``regiondrop``, ``pass``) also gives a
:class:`MaskSource`: the same rule, traceable, with no host synchronisation, which the exported
ONNX program and the compiled-op executor run. Such a policy answers the eager engine *through*
its mask source, so each rule is written once.

Engine-side rules every policy shares: a frame is a *refresh* (everything dense) on the
first frame, after ``reset()``, on a resolution change, every ``refresh_every`` frames if
set, and on a scene cut (more than ``scene_cut`` of the input's 16x16 blocks changed); a
layer whose active tile fraction is above ``crossover`` runs dense.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import torch
from torch import nn

from passrt.plan import masks
from passrt.plan.steps import SpatialStep

CUT_BLOCK = 16  # block size (pixels) used to measure the changed fraction for scene cuts


class FrameContext:
    """Per-frame state shared by the eager engine and the policy."""

    FULL = "full"  # marker: a dense value was recomputed (it may have changed anywhere)

    def __init__(self, plan, env: dict, native: bool = False, caches_stale: bool = False):
        self.plan, self.env, self.input_name = plan, env, plan.input_name
        self.changed: dict[str, object] = {}  # value name -> change map, FULL, or None
        self.input_fraction = 0.0
        # The executor runs passrt's C++ kernels (the op is loaded): a policy may run its frame-level
        # rule with them too (kernels tested equal to the rule's tensor ops).
        self.native = native
        # The dense engine answered the previous frame, so this one is the engine's or a refresh
        # (ReferenceExecutor.begin): a policy may skip work only sparse frames need (exact: the noise measurement).
        self.caches_stale = caches_stale

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

    def value(self, name: str) -> torch.Tensor:
        """A spatial value as an NCHW view of its cache (what a mask source reads)."""
        return self.env[name].nchw()


@dataclass
class Policy:
    """Parameters shared by every policy (see the module docstring)."""

    name = "policy"
    # True when a step's tiles depend only on its tile grid ((H, W, tile)) and are known once the frame has
    # begun (one mask per frame, rescaled: regiondrop), step_done does nothing, and step_tiles marks the
    # step changed iff it returns tiles: an executor may then ask once per grid and run the steps without
    # returning to the policy in between (the native executor's whole-plan path).
    common_tiles = False
    tile_px: int = 16  # a layer's tile covers about this many input pixels ...
    # ... but at least this many output cells per side. 1 on the reference executor: a 1x1 conv is
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
        changed = nonempty(step.propagate(ctx.src_maps(step)))
        ctx.changed[step.name] = changed
        return masks.to_tiles(changed, step.tile) if changed is not None else None

    def step_done(self, step: SpatialStep, ctx: FrameContext, tiles, dense: bool) -> None:
        pass

    def after_refresh(self, steps, env) -> None:
        pass

    def end_frame(self) -> None:
        pass

    def operating_knob(self) -> Optional[str]:
        """The parameter that trades speed for accuracy, lowered to follow the dense model more
        closely (by the run-time guard); None when the policy has none."""
        return None

    def overhead_macs(self) -> float:
        """MACs the policy itself spent on the last frame (e.g. learned gates); counted in stats()."""
        return 0.0

    def frame_stats(self) -> dict:
        """Policy-specific figures of the last frame, merged into SparseModel.stats()."""
        return {}

    def mask_source(self, plan) -> "MaskSource":
        """The rule as traceable tensor ops for ``plan`` (exportable policies only)."""
        raise NotImplementedError(f"policy '{self.name}' has no traceable mask source")

    def describe(self) -> dict:
        return {"name": self.name, **{f.name: getattr(self, f.name) for f in fields(self)}}


def nonempty(m):
    return m if m is not None and bool(m.any()) else None


class MaskSource(nn.Module):
    """A policy's tile masks for one plan as standard tensor ops (they export as standard ONNX ops).

    Per frame: ``begin(image, refresh, states)`` (returns the source's new states), then
    ``step_mask(step, value)`` for every spatial step in plan order (``value(name)`` gives a value
    computed so far), then ``end()`` (more new states). ``full`` is (1,) 1.0 on a dense refresh;
    ``overhead_macs()`` is what the policy itself executed. A refresh marks every tile, and a
    layer above its crossover computes every tile, which is what the eager engine's dense path does.
    """

    state_keys: list
    state_shapes: list

    def __init__(self, crossover: float):
        super().__init__()
        self.crossover = crossover
        self._matrices: dict = {}

    def rescale(self, key, blocks: torch.Tensor, *span_args) -> torch.Tensor:
        """A (Hb, Wb) block mask on a layer's tile grid, (Ht, Wt) 0/1 (see masks.span_matrices).

        The matrices are registered once as buffers, so they follow the source to its device
        and export as initializers."""
        if key not in self._matrices:
            name = "tiles_" + "_".join(str(k).replace(".", "_") for k in key)
            for part, m in zip(("rows", "cols"), masks.span_matrices(*span_args)):
                self.register_buffer(f"{name}_{part}", m, persistent=False)
            self._matrices[key] = (f"{name}_rows", f"{name}_cols")
        rows, cols = (self._buffers[n] for n in self._matrices[key])
        return ((rows @ blocks @ cols) > 0).float()

    def finish(self, tiles: torch.Tensor) -> torch.Tensor:
        """Crossover (above it a layer computes every tile) and refresh, on a (Ht, Wt) 0/1 grid."""
        crossover = (tiles.sum().reshape(1) > self.crossover * tiles.numel()).float()
        tiles = torch.maximum(tiles, torch.maximum(self.full, crossover))
        return tiles.reshape(1, 1, *tiles.shape)

    def overhead_macs(self):
        return 0.0

    def in_place_ok(self, image) -> bool:
        """Whether ``begin(..., in_place=True)`` may run this frame's rule eagerly in passrt's native
        kernels, updating the states in place (no source does unless it says so)."""
        return False

    def end(self) -> list:
        return []


def native_frame_ok(image: torch.Tensor, min_size: int) -> bool:
    """Whether passrt's native frame kernels can run on ``image``: a float32 CPU frame at least ``min_size``
    pixels on each side (one block of the rule's statistic), with the op loaded."""
    from passrt.kernels import extension

    return (image.device.type == "cpu" and image.dtype == torch.float32 and min(image.shape[2:]) >= min_size
            and extension.load())
