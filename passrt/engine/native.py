"""The native executor: the reference executor with its conv steps run by passrt's C++ tile kernels.

Convs are most of a CNN's time, and in the reference executor a sparse conv is several
PyTorch calls (gather patches with their halos, conv or GEMM, epilogue ops, scatter) whose
intermediate tensors are as large as the patches. Here each conv step is one call of
``torch.ops.passrt.conv_tiles`` (:mod:`passrt.kernels.native`): windows read straight from the
input cache, one GEMM, epilogue and write-back fused. Everything else (masks, pooling,
upsampling, other elementwise steps, convs whose epilogue the kernels do not compute, dense
frames) is the reference executor's, so the two agree step by step and the reference stays
the oracle of every test. RegionDrop's per-frame rule also runs its full-frame operations in
C++ here (one pass each instead of several tensor ops).
"""

from __future__ import annotations

from typing import Optional

import torch

from passrt.engine.faster import faster_way
from passrt.engine.reference import ReferenceExecutor
from passrt.kernels import native
from passrt.plan.epilogue import kernel_affine, kernel_epilogue
from passrt.plan.steps import ConvStep, DenseStep, InputStep, PointwiseStep, SpatialStep
from passrt.policies.base import FrameContext

NAME = "native (C++ tile kernels, CPU)"
_NONE = torch.empty(0, dtype=torch.long)  # no tile: the program skips the step
# A map of at most this many cells is computed densely by the tile kernels (every tile active), not by
# PyTorch's conv, whose fixed cost per call is larger than the work there (measured on SSDLite's small
# heads and extra layers, single thread: 3-10x faster on 5x6 maps and smaller, about 2x on 9x12; on
# larger maps either may win).
DENSE_NATIVE_CELLS = 128


class NativeExecutor(ReferenceExecutor):
    name = NAME
    native_kernels = True  # RegionDrop's frame-level rule runs in C++ too (policies/regiondrop.py)

    def __init__(self, plan, policy, dtype: torch.dtype, dense_engine=None, dense_above: float = 0.5):
        super().__init__(plan, policy, dtype, dense_engine, dense_above)
        # The values stored as row caches, with their (C, H, W).
        spatial = {s.name: tuple(s.shape) for s in plan.steps if isinstance(s, (SpatialStep, InputStep))}
        self.convs = {s.name: c for s in plan.steps if isinstance(s, ConvStep)
                      for c in [tile_conv(s, spatial)] if c is not None}
        self.affines = {s.name: a for s in plan.steps if isinstance(s, PointwiseStep)
                        for a in [tile_affine(s, spatial)] if a is not None}
        self._every: dict = {}  # tile grid (Ht, Wt) -> the ids of all its tiles
        self._dense_ways: dict = {}  # conv step name -> FasterWay (run_dense)
        self.schedule = self._whole_plan_schedule() if policy.common_tiles else None

    def run_sparse(self, step: SpatialStep, active: torch.Tensor) -> None:
        env = self.env
        conv = self.convs.get(step.name)
        if conv is not None:
            conv(env[step.srcs[0]], env[step.name], step.tile, active, env)
        elif step.name in self.affines:
            src, affine = self.affines[step.name]
            affine(env[src], env[step.name], step.tile, active)
        else:
            step.run_sparse(env, active)

    # ---- the whole-plan path (policies with common tiles) -------------------------------------------
    def _whole_plan_schedule(self) -> list:
        """The plan as runs of native steps (each a :class:`native.TileProgram`) and the other steps
        between them; non-spatial steps whose results no spatial step reads (a detector's reshapes and
        concatenations of its heads) move to the end, so the runs are as long as the plan allows."""
        steps = self.plan.steps[1:]
        feeds_spatial: set = set()  # values a spatial step reads, directly or through non-spatial steps
        for step in reversed(steps):
            if isinstance(step, SpatialStep) or step.name in feeds_spatial:
                feeds_spatial.update(step.srcs)
        deferred = [s for s in steps if isinstance(s, DenseStep) and s.name not in feeds_spatial]
        schedule: list = []  # steps, and (program, its steps) for each run of native steps
        for step in steps:
            if step in deferred:
                continue
            if self._recordable(step):
                if not schedule or not isinstance(schedule[-1], tuple):
                    schedule.append((native.TileProgram(), []))
                self._record_step(*schedule[-1], step)
            else:
                schedule.append(step)
        return schedule + deferred

    def _recordable(self, step) -> bool:
        """A step the kernels run whose inputs are caches that exist now (a value a non-spatial step makes,
        e.g. a global pooling fed back as a map, gets its cache on the first frame: such a step runs on its own)."""
        if step.name in self.convs:
            c = self.convs[step.name]
            reads = [step.srcs[0], c.epilogue.residual, c.follow_epilogue.residual]
        elif step.name in self.affines:
            reads = [self.affines[step.name][0]]
        else:
            return False
        return all(r is None or r in self.env for r in reads)

    def _record_step(self, program: native.TileProgram, recorded: list, step: SpatialStep) -> None:
        env = self.env
        recorded.append(step)
        if step.name in self.convs:
            program.add_conv(self.convs[step.name], env[step.srcs[0]], env[step.name], step.tile, env)
        else:
            src, affine = self.affines[step.name]
            program.add_affine(affine, env[src], env[step.name], step.tile)

    def _run_steps(self, ctx, refresh: bool) -> dict:
        if refresh or self.schedule is None:
            return super()._run_steps(ctx, refresh)
        layers: dict = {}
        grids: dict = {}  # (H, W, tile) -> (tiles, mode, active ids, active count): asked once per grid
        for item in self.schedule:
            if isinstance(item, DenseStep):
                self._run_dense_step(item, ctx, refresh)
            elif isinstance(item, SpatialStep):
                layers[item.label] = self._layer_record(item, *self._run_spatial(item, ctx, refresh))
            else:
                program, steps = item
                program([self._grid_tiles(step, ctx, grids, layers) for step in steps])
        return layers

    def _grid_tiles(self, step: SpatialStep, ctx, grids: dict, layers: dict) -> torch.Tensor:
        """The tile ids a step of a program runs this frame (none: skipped; every tile above the crossover),
        with the bookkeeping _run_spatial does."""
        key = (step.shape[1], step.shape[2], step.tile)
        if key not in grids:
            tiles = self.policy.step_tiles(step, ctx)
            active = self._active_tiles(tiles)
            n, total = (0 if active is None else active.numel()), step.grid[0] * step.grid[1]
            if n == 0:
                grids[key] = (None, "skipped", _NONE, 0)
            elif n > self.policy.crossover * total:
                grids[key] = ("dense", "dense", self._every_tile(step), total)
            else:
                grids[key] = (tiles, "sparse", active, n)
        tiles, mode, ids, n = grids[key]
        ctx.changed[step.name] = FrameContext.FULL if n else None
        self.tiles[step.label] = tiles
        layers[step.label] = self._layer_record(step, mode, n)
        return ids

    def run_dense(self, step: SpatialStep) -> None:
        """Every tile of a step: PyTorch's conv or the tile kernels with every tile active, whichever ran a
        dense frame of this step faster on this machine (engine/faster.py)."""
        if step.name not in self.convs:
            step.run_dense(self.env)
            return
        if step.shape[1] * step.shape[2] <= DENSE_NATIVE_CELLS:
            self.run_sparse(step, self._every_tile(step))
            return
        way = faster_way(self._dense_ways, step.name, ("torch", "tiles"))
        way.run(lambda w: step.run_dense(self.env) if w == "torch" else self.run_sparse(step, self._every_tile(step)))

    def _every_tile(self, step: SpatialStep) -> torch.Tensor:
        if step.grid not in self._every:
            self._every[step.grid] = torch.arange(step.grid[0] * step.grid[1])
        return self._every[step.grid]

    def native_fraction(self) -> float:
        """The share of the plan's conv MACs (per cell) that the native kernels run."""
        convs = [s for s in self.plan.steps if isinstance(s, ConvStep)]
        total = sum(s.macs_per_cell * s.shape[1] * s.shape[2] for s in convs)
        done = sum(s.macs_per_cell * s.shape[1] * s.shape[2] for s in convs if s.name in self.convs)
        return done / total if total else 1.0


def tile_conv(step: ConvStep, spatial: dict) -> Optional[native.TileConv]:
    """The step as one native call, or None when the kernels cannot compute it (other dtypes, grouped
    convs that are not depthwise, an epilogue other than [act] [+ residual] [act], a residual that is
    not a spatial value)."""
    convs = [step] + ([step.follow] if step.follow is not None else [])
    epilogues = []
    for conv in convs:
        if not native.supports(conv.weight, conv.groups):
            return None
        epi = kernel_epilogue(conv.epilogue, step.name)
        if epi is None or (epi[2] is not None and epi[2] not in spatial):
            return None
        epilogues.append(native.Epilogue(epi[0], epi[1], epi[2], epi[3]))
    conv = native.TileConv(native.kernel_weight(step.weight, step.groups), _contiguous(step.bias), step.win,
                           step.groups, epilogues[0])
    if step.follow is not None:
        conv.follow_weight, conv.follow_bias = step.follow.weight_t.contiguous(), _contiguous(step.follow.bias)
        conv.follow_epilogue = epilogues[1]
    return conv


def tile_affine(step: PointwiseStep, spatial: dict) -> Optional[tuple[str, native.TileAffine]]:
    """(input name, the step as one native call) when it is a per-channel affine map of a value of its own
    size (plan.epilogue.kernel_affine), else None."""
    found = kernel_affine(step.op, step.shape[0])
    if found is None or spatial.get(found[0]) != tuple(step.shape):
        return None
    return found[0], native.TileAffine(found[1], found[2], tuple(step.shape[1:]))


def _contiguous(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return t.detach().contiguous() if t is not None else None


__all__ = ["NativeExecutor"]
