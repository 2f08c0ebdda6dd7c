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

REFERENCE = "reference (pure PyTorch)"
BACKENDS = ("auto", "reference", "op")


class SparseModel:
    """Runs ``model`` frame by frame, recomputing only what the policy marks as changed.

    Call it with one (1, C, H, W) frame at a time; it returns what ``model`` returns.
    Every layer keeps its output from earlier frames (dense storage, sparse compute).
    """

    def __init__(self, model: nn.Module, policy: Policy | str = "exact", dense_ops=(), backend: str = "auto",
                 **params):
        if backend not in BACKENDS:
            raise PassrtError(f"unknown backend '{backend}'; choose one of: {', '.join(BACKENDS)}")
        self.backend, self._backend_in_use, self._backend_note = backend, REFERENCE, None
        self.program = None  # the op backend's SparseProgram
        self.policy = make_policy(policy, **params)
        self.model = _with_policy_weights(model, self.policy).eval()
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
            if self.program is not None:
                return self._run_program(x, refresh)
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
            "backend": self._backend_in_use,
            **({"backend_note": self._backend_note} if self._backend_note else {}),
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
            self._choose_backend(x)
            refresh = True
        every = self.policy.refresh_every
        if every and self.frames % every == 0:
            refresh = True
        self._force_refresh = False
        return refresh

    def _choose_backend(self, x: torch.Tensor) -> None:
        """The compiled op (through :class:`~passrt.export.program.SparseProgram`) or the reference.

        'auto' takes the op for CUDA tensors and the reference for CPU tensors: on CPU the
        reference's gathered GEMMs are faster than the op's direct loops (benchmarks/RESULTS.md).
        """
        from passrt.engine.policies import RegionDrop
        from passrt.gates.policy import PassGates
        from passrt.kernels import extension

        self.program, self._backend_in_use, self._backend_note = None, REFERENCE, None
        reason = None
        if self.backend == "reference":
            pass
        elif not isinstance(self.policy, (RegionDrop, PassGates)):
            reason = (f"policy '{self.policy.name}' runs on the reference engine only; the op backend runs "
                      "regiondrop and pass")
        elif self.backend == "auto" and x.device.type != "cuda":
            reason = "CPU tensors: the reference engine is the faster CPU path"
        elif not extension.load():
            reason = f"the passrt op is {extension.status()}"
        elif x.device.type == "cuda" and not extension.status().endswith("CPU+CUDA op"):
            reason = f"the passrt op has no CUDA kernels ({extension.status()})"
        if reason is None and self.backend != "reference":
            from passrt.export.program import SparseProgram, op_node

            self.program = SparseProgram(self.plan, self.policy, node=op_node).to(x.device, x.dtype)
            self._states = self.program.initial_states(x.device, x.dtype)
            self._backend_in_use = f"passrt op ({x.device.type.upper()})"
            return
        if reason is not None and self.backend == "op":
            raise PassrtError(f"backend 'op' is not available: {reason}")
        if x.device.type != "cpu":
            raise PassrtError(f"the reference engine runs on CPU tensors; for {x.device} tensors the compiled op "
                              f"is needed, and {reason or 'backend=reference was asked for'}")
        self._backend_note = reason if self.backend == "auto" and x.device.type == "cuda" else None

    def _run_program(self, x: torch.Tensor, refresh: bool):
        """One frame through the op backend: masks and convs on x's device, no host synchronisation
        until the caller reads an output (stats() reads the executed fraction)."""
        n = len(self._states)
        flag = torch.full((1,), float(refresh), device=x.device, dtype=x.dtype)
        result = self.program(x, flag, *self._states)
        outputs, active, self._states = result[:-n - 1], result[-n - 1], list(result[-n:])
        macs_dense = sum(s.macs_per_cell * s.shape[1] * s.shape[2] for s in self.program.spatial)
        self._record(refresh, None, {}, macs_dense, float(active) * macs_dense)
        flat = iter(o.clone() if isinstance(o, torch.Tensor) else o for o in outputs)  # caches stay private
        return fx.node.map_aggregate(self.plan.outputs, lambda a: next(flat))

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
                                  "skip_rate": 1.0 - computed / cells,
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
        conv_skips = [v["skip_rate"] for v in layers.values() if v["kind"].startswith("conv")]
        self._last = {
            "refresh": refresh,
            "input_active_fraction": 1.0 if refresh else ctx.input_fraction if ctx else None,
            "active_fraction": active,
            # PASS's metrics, for every policy: R_p, the share of each conv's output cells skipped,
            # averaged over the convs; R_m, the share of the dense MACs not executed, the policy's
            # own (gates) counted as executed.
            "skip_rate": sum(conv_skips) / len(conv_skips) if conv_skips else None,
            "mac_reduction": 1.0 - active,
            "macs_dense": macs_dense,
            "macs_executed": macs_exec,
            "layers": layers,
            **self.policy.frame_stats(),
        }
        self.frames += 1
        self._totals["refreshes"] += int(refresh)
        self._totals["active_fraction"] += active
        self._totals["macs_executed"] += macs_exec


def _with_policy_weights(model: nn.Module, policy: Policy) -> nn.Module:
    """A fine-tuned backbone that comes with the policy (PASS-F gates) runs on a copy of ``model``."""
    weights = getattr(getattr(policy, "net", None), "backbone", None)
    if weights is None:
        return model
    import copy

    tuned = copy.deepcopy(model)
    try:
        tuned.load_state_dict(weights)
    except RuntimeError as e:
        raise PassrtError(f"the gates carry fine-tuned weights for another model: {str(e).splitlines()[0]}") from None
    return tuned


def sparsify(model: nn.Module, policy: Policy | str = "exact", dense_ops=(), backend: str = "auto",
             **params) -> SparseModel:
    """Wrap ``model`` for temporally sparse streaming inference.

    ``policy`` is a name ('dense', 'exact', 'regiondrop', 'layerwise') with its parameters
    as keyword arguments (e.g. ``threshold=0.08``), or a Policy object. ``dense_ops`` lists
    extra modules/functions/method names that are safe to run densely. ``backend``: 'reference'
    (pure PyTorch, CPU), 'op' (passrt's compiled op, CPU or CUDA; regiondrop), or 'auto' (the op
    for CUDA tensors, the reference for CPU tensors); ``stats()['backend']`` says which ran.
    """
    return SparseModel(model, policy, dense_ops, backend, **params)
