"""The streaming module returned by :func:`passrt.sparsify`."""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
from torch import nn

from passrt.engine.graph import Plan, build_plan, trace
from passrt.engine.policies import FrameContext, Policy, make_policy
from passrt.engine.steps import DenseStep, InputStep, Ref, SpatialStep
from passrt.errors import PassrtError
from passrt.kernels.storage import FeatureMap

BACKEND = "reference (pure PyTorch)"


class SparseModel:
    """Runs ``model`` frame by frame, recomputing only what the policy marks as changed.

    Call it with one (1, C, H, W) frame at a time; it returns what ``model`` returns.
    Every layer keeps its output from earlier frames (dense storage, sparse compute).
    """

    def __init__(self, model: nn.Module, policy: Policy | str = "exact", dense_ops=(), **params):
        self.model = model.eval()
        self.policy = make_policy(policy, **params)
        self.dense_ops = tuple(dense_ops)
        self.graph: fx.GraphModule = trace(self.model)
        self.plan: Plan | None = None
        self.env: dict[str, Any] = {}
        self._force_refresh = True
        self.frames = 0
        self._last: dict = {}
        self._tiles: dict[str, object] = {}  # label -> last tile mask, "dense", or None
        self._totals = {"macs_executed": 0.0, "active_fraction": 0.0, "refreshes": 0}

    # ---- public API -----------------------------------------------------------------
    def __call__(self, x: torch.Tensor):
        if x.dim() != 4 or x.shape[0] != 1:
            raise PassrtError(f"a SparseModel takes one frame at a time, shaped (1, C, H, W); got {tuple(x.shape)}")
        with torch.inference_mode():
            refresh = self._prepare(x)
            return self._run(x, refresh)

    def reset(self) -> None:
        """Forget all caches: the next frame runs dense."""
        self._force_refresh = True
        self.policy.reset()

    def tile_masks(self) -> dict:
        """Per layer (by label), the (Ht, Wt) bool mask of tiles recomputed on the last frame."""
        grids = {s.label: s.grid for s in self.plan.steps if isinstance(s, SpatialStep)} if self.plan else {}
        out = {}
        for label, v in self._tiles.items():
            if isinstance(v, torch.Tensor):
                out[label] = v.reshape(v.shape[-2:]) > 0
            else:
                out[label] = torch.ones(grids[label], dtype=torch.bool) if v == "dense" else None
        return out

    def stats(self) -> dict:
        """Figures of the last frame, plus means over all frames since construction."""
        n = max(self.frames, 1)
        return {
            **self._last,
            "frames": self.frames,
            "refreshes": self._totals["refreshes"],
            "active_fraction_mean": self._totals["active_fraction"] / n,
            "macs_executed_mean": self._totals["macs_executed"] / n,
            "policy": self.policy.describe(),
            "backend": BACKEND,
        }

    # ---- internals ------------------------------------------------------------------
    def _prepare(self, x: torch.Tensor) -> bool:
        refresh = self._force_refresh
        if self.plan is None or tuple(x.shape) != self.plan.input_shape:
            self.plan = build_plan(self.graph, x, self.policy.tile_for, self.dense_ops)
            self.env = {}
            for step in self.plan.steps:
                if isinstance(step, (SpatialStep, InputStep)):
                    self.env[step.name] = FeatureMap(*step.shape, dtype=x.dtype)
            self.policy.reset()
            refresh = True
        every = self.policy.refresh_every
        if every and self.frames % every == 0:
            refresh = True
        self._force_refresh = False
        return refresh

    def _run(self, x: torch.Tensor, refresh: bool):
        plan, env, policy = self.plan, self.env, self.policy
        env[plan.input_name].write_nchw(x)
        ctx = FrameContext(env, plan.input_name)
        refresh = policy.begin_frame(ctx, x, refresh)
        if refresh:
            ctx.changed[plan.input_name] = FrameContext.FULL
        layers, macs_dense, macs_exec = {}, 0.0, 0.0
        for step in plan.steps[1:]:
            if isinstance(step, DenseStep):
                if refresh or any(ctx.changed.get(s) is not None for s in step.srcs):
                    step.run(env)
                    ctx.changed[step.name] = FrameContext.FULL
                continue
            mode, active_tiles = self._run_spatial(step, ctx, refresh)
            total = step.grid[0] * step.grid[1]
            cells = step.shape[1] * step.shape[2]
            computed = cells if mode == "dense" else min(active_tiles * step.tile ** 2, cells)
            layers[step.label] = {"kind": step.kind, "mode": mode, "active_fraction": active_tiles / total,
                                  "macs_dense": step.macs_per_cell * cells,
                                  "macs_executed": step.macs_per_cell * computed}
            macs_dense += step.macs_per_cell * cells
            macs_exec += step.macs_per_cell * computed
        if refresh:
            policy.after_refresh(plan.steps, env)
        macs_exec += policy.overhead_macs()
        self._record(refresh, ctx, layers, macs_dense, macs_exec)
        return fx.node.map_aggregate(plan.outputs, self._output_value)

    def _run_spatial(self, step: SpatialStep, ctx: FrameContext, refresh: bool) -> tuple[str, int]:
        """Run one spatial step densely, sparsely or not at all; return (mode, tiles computed)."""
        total = step.grid[0] * step.grid[1]
        if refresh:
            step.run_dense(self.env)
            ctx.changed[step.name] = FrameContext.FULL
            self._tiles[step.label] = "dense"
            return "dense", total
        policy = self.policy
        tiles = policy.step_tiles(step, ctx)
        active = tiles.reshape(-1).nonzero().reshape(-1) if tiles is not None else None
        n = 0 if active is None else active.numel()
        if n == 0:
            mode = "skipped"
        elif n > policy.crossover * total:  # above the cost crossover, dense is cheaper
            step.run_dense(self.env)
            mode, n = "dense", total
        else:
            step.run_sparse(self.env, active)
            mode = "sparse"
        policy.step_done(step, ctx, tiles if n else None, mode == "dense")
        self._tiles[step.label] = tiles if mode == "sparse" else (mode if mode == "dense" else None)
        return mode, n

    def _output_value(self, a):
        if not isinstance(a, Ref):
            return a
        v = self.env[a.name]
        v = v.nchw() if isinstance(v, FeatureMap) else v
        # Callers must not be able to modify a cache through what they are given.
        return v.clone() if isinstance(v, torch.Tensor) else v

    def _record(self, refresh, ctx, layers, macs_dense, macs_exec):
        active = macs_exec / macs_dense if macs_dense else 1.0
        self._last = {
            "refresh": refresh,
            "input_active_fraction": 1.0 if refresh else ctx.input_fraction,
            "active_fraction": active,
            "macs_dense": macs_dense,
            "macs_executed": macs_exec,
            "layers": layers,
            **self.policy.frame_stats(),
        }
        self.frames += 1
        self._totals["refreshes"] += int(refresh)
        self._totals["active_fraction"] += active
        self._totals["macs_executed"] += macs_exec


def sparsify(model: nn.Module, policy: Policy | str = "exact", dense_ops=(), **params) -> SparseModel:
    """Wrap ``model`` for temporally sparse streaming inference.

    ``policy`` is a name ('dense', 'exact', 'regiondrop', 'layerwise') with its parameters
    as keyword arguments (e.g. ``threshold=0.08``), or a Policy object. ``dense_ops`` lists
    extra modules/functions/method names that are safe to run densely.
    """
    return SparseModel(model, policy, dense_ops, **params)
