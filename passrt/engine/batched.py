"""Batched execution across streams: the sparse frames of several streams of one plan in one kernel call per step.

Streams of one model (:meth:`SparseModel.new_stream`) at one resolution share a plan; each keeps its own
caches, policy state and decisions. Here their caches are slices of one stacked tensor per value
((N, H*W + 3, C): :meth:`FeatureMap.stacked`), so one call of the native kernels (``conv_tiles``, or the
whole-plan ``TileProgram``) computes the active tiles of every stream: stream b's tile ids are offset by
b times the layer's tile count, and the kernels find each cell's stream from its id (passrt_tiles.h).
Everything else stays per stream, exactly as when the stream runs alone: its policy's frame rule (masks,
scene cuts, noise level), refreshes (which run dense on that stream's slices), the dense engine's answers,
statistics. So a stream's outputs equal its outputs run alone, to the float rounding of GEMMs given more
rows (tests/engine/test_batched.py).

Why this design and not a batched dense path over the streams: a sparse frame's work is its active tiles,
different in every stream; concatenating the tile lists batches exactly that work and nothing more (no
stream computes another's tiles, no padding to a common mask). What it saves is per call: the kernel
launch and threading fixed costs once per step instead of once per stream, and GEMMs on more rows (a
layer with few active cells runs on one thread alone; several streams' cells together spread over the
cores). What it cannot save: the per-stream frame rule and Python bookkeeping. Whether that is faster on
a given machine is measured (benchmarks/multistream.py), not assumed.

Streams join a group when they reach its plan in the same call (normally: the first frame of every stream);
a stream that reaches the plan later (its input changed resolution) runs alone, as do streams whose
executor is not the native one (the reference or op executor, another dtype).
"""

from __future__ import annotations

import functools

import torch

from passrt.engine.native import NativeExecutor
from passrt.errors import PassrtError
from passrt.kernels.storage import FeatureMap
from passrt.plan.steps import DenseStep, InputStep, SpatialStep


class _Stack:
    """A value's caches of every stream of a group, as the kernels read them (``rows``: (N, H*W + 3, C))."""

    __slots__ = ("rows",)

    def __init__(self, rows: torch.Tensor):
        self.rows = rows


class _Group:
    """The streams batched on one plan: stacked caches, and the plan's native steps recorded over the stacks."""

    def __init__(self, plan, members: list, policy, dtype: torch.dtype):
        self.plan = plan
        self.slots = {id(m): b for b, m in enumerate(members)}  # stream (its SparseModel) -> its slice
        self.stacks, self.maps = {}, {}
        for step in plan.steps:
            if isinstance(step, (SpatialStep, InputStep)):
                self.stacks[step.name], self.maps[step.name] = FeatureMap.stacked(len(members), *step.shape, dtype)
        self.batched = _StackExecutor(self, plan, policy, dtype)


class _StackExecutor(NativeExecutor):
    """The native steps of a plan over a group's stacks (never run as an executor: its kernels' calls,
    ``run_sparse`` and the whole-plan ``schedule``, are what the group's streams share)."""

    def __init__(self, group: _Group, plan, policy, dtype):
        self.group = group
        super().__init__(plan, policy, dtype)

    def new_cache(self, step, dtype):
        return _Stack(self.group.stacks[step.name])


class StackedExecutor(NativeExecutor):
    """A stream's native executor whose caches are its slice of its group's stacks (run alone, it is the
    native executor; :class:`StreamBatch` runs its sparse frames' steps with the other streams')."""

    def __init__(self, group: _Group, slot: int, plan, policy, dtype, dense_engine=None, dense_above: float = 0.5):
        self.group, self.slot = group, slot
        super().__init__(plan, policy, dtype, dense_engine, dense_above)

    def new_cache(self, step, dtype):
        return self.group.maps[step.name][self.slot]


class StreamBatch:
    """One frame of each of several streams (SparseModels of one model: ``new_stream()``) per :meth:`run`,
    the sparse frames of streams on one plan run together (see the module docstring)."""

    def __init__(self, models: list):
        self.models = list(models)
        self.groups: dict = {}  # id(plan) -> _Group (which holds the plan, so the id stays its own)
        self._round: list = []  # (model, frame) of the run in progress: whom a new group takes
        for m in self.models:
            m.native_executor = functools.partial(self._executor, m)

    def run(self, models: list, xs: list) -> list:
        """The outputs of one frame of each of ``models`` (a subset of this batch's streams, each once), as
        ``model(x)`` would give them."""
        for x in xs:
            if x.dim() != 4 or x.shape[0] != 1:
                raise PassrtError(f"a stream takes one frame at a time, shaped (1, C, H, W); got {tuple(x.shape)}")
        self._round = list(zip(models, xs))
        results: list = [None] * len(models)
        together: dict = {}  # group -> positions in this call
        with torch.inference_mode():
            refreshes = [m._prepare(x) for m, x in self._round]
            for i, m in enumerate(models):
                ex = m.executor
                if isinstance(ex, StackedExecutor) and self.groups.get(id(m.plan)) is ex.group:
                    together.setdefault(ex.group, []).append(i)
                else:  # not batched: alone, as model(x) runs it
                    results[i] = ex.run(xs[i], refreshes[i])
            for group, members in together.items():
                self._run_group(group, [models[i].executor for i in members], [xs[i] for i in members],
                                [refreshes[i] for i in members], members, results)
        self._round = []
        for m, (_, record) in zip(models, results):
            m._record(record)
        return [outputs for outputs, _ in results]

    def unbatched(self, model) -> str | None:
        """None when ``model``'s frames run in a group (their steps shared with other streams' frames), else why
        they run alone."""
        ex = model.executor
        if ex is None:
            return "no frame yet"
        if isinstance(ex, StackedExecutor) and self.groups.get(id(model.plan)) is ex.group:
            return None
        if not isinstance(ex, NativeExecutor):
            return f"its executor is the {ex.name.split(' (')[0]} one; batching is the native executor's"
        h, w = model.plan.input_shape[2:]
        return f"no other stream started at its size {w}x{h}"

    # ---- internals ------------------------------------------------------------------
    def _executor(self, model, plan, policy, dtype, dense_engine=None, dense_above: float = 0.5):
        """``model.native_executor``: a slice of the plan's group, formed by the streams that reach the plan in
        this call; a plain native executor for a stream that reaches it later or alone."""
        group = self.groups.get(id(plan))
        if group is None:
            # This model (its plan is set already) and the streams still to prepare in this call on this size.
            members = [m for m, x in self._round if (m is model or m.plan is not plan)
                       and tuple(x.shape) == plan.input_shape and x.dtype == dtype]
            if len(members) < 2:
                return NativeExecutor(plan, policy, dtype, dense_engine, dense_above)
            group = self.groups[id(plan)] = _Group(plan, members, policy, dtype)
        slot = group.slots.get(id(model))
        if slot is None:
            return NativeExecutor(plan, policy, dtype, dense_engine, dense_above)
        return StackedExecutor(group, slot, plan, policy, dtype, dense_engine, dense_above)

    @staticmethod
    def _run_group(group: _Group, executors: list, xs: list, refreshes: list, members: list, results: list) -> None:
        frames = [ex.begin(x, r) for ex, x, r in zip(executors, xs, refreshes)]
        sparse = [(ex, f.ctx) for ex, f in zip(executors, frames) if f.answered is None and not f.refresh]
        shared = group.batched
        layers = iter(_whole_plan(shared, sparse) if shared.schedule is not None else _step_by_step(shared, sparse))
        for ex, f, i in zip(executors, frames, members):
            if f.answered is not None:  # the dense engine's
                results[i] = f.answered
            elif f.refresh:  # dense, on this stream's slices
                results[i] = ex.finish(f, ex._run_steps(f.ctx, True))
            else:
                results[i] = ex.finish(f, next(layers))


def _offset(ids: torch.Tensor, ex: StackedExecutor, step: SpatialStep) -> torch.Tensor:
    """A stream's tile ids of a step as ids into the stacked maps (its slice's tiles after the others')."""
    return ids + ex.slot * (step.grid[0] * step.grid[1]) if ex.slot else ids


def _whole_plan(shared: _StackExecutor, streams: list) -> list:
    """The steps of sparse frames by the plan's native programs, one call per program for all ``streams``
    ((executor, ctx) each); per stream, the tiles and bookkeeping of NativeExecutor._run_steps."""
    layers = [{} for _ in streams]
    if not streams:
        return layers
    grids = [{} for _ in streams]
    union: dict = {}  # (H, W, tile) -> every stream's ids on that grid, offset, in one tensor
    for item in shared.schedule:
        if isinstance(item, DenseStep):
            for ex, ctx in streams:
                ex._run_dense_step(item, ctx, False)
        elif isinstance(item, SpatialStep):
            for (ex, ctx), lay in zip(streams, layers):
                lay[item.label] = ex._layer_record(item, *ex._run_spatial(item, ctx, False))
        else:
            program, steps = item
            ids = []
            for step in steps:
                per = [ex._grid_tiles(step, ctx, g, lay) for (ex, ctx), g, lay in zip(streams, grids, layers)]
                key = (step.shape[1], step.shape[2], step.tile)
                if key not in union:
                    union[key] = torch.cat([_offset(p, ex, step) for (ex, _), p in zip(streams, per)])
                ids.append(union[key])
            program(ids)
    return layers


def _step_by_step(shared: _StackExecutor, streams: list) -> list:
    """Policies whose tiles come step by step (exact, layerwise): per step, each stream's decision, one native
    call for the streams that run it sparse, then each stream's policy told."""
    layers = [{} for _ in streams]
    if not streams:
        return layers
    for step in shared.plan.steps[1:]:
        if isinstance(step, DenseStep):
            for ex, ctx in streams:
                ex._run_dense_step(step, ctx, False)
            continue
        native = step.name in shared.convs or step.name in shared.affines
        decided = [ex.decide(step, ctx) for ex, ctx in streams]
        ids = []
        for (ex, _), (mode, _, active) in zip(streams, decided):
            if mode == "sparse" and native:
                ids.append(_offset(active, ex, step))
            elif mode == "sparse":
                ex.run_sparse(step, active)
            elif mode == "dense":
                ex.run_dense(step)
        if ids:
            shared.run_sparse(step, torch.cat(ids))
        for (ex, ctx), (mode, tiles, active), lay in zip(streams, decided, layers):
            lay[step.label] = ex._layer_record(step, *ex.step_done(step, ctx, mode, tiles, active))
    return layers


__all__ = ["StreamBatch", "StackedExecutor"]
