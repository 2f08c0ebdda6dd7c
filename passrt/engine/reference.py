"""The reference executor: runs a plan's steps eagerly on :class:`FeatureMap` caches (pure PyTorch).

Per frame the policy decides the tiles of each spatial step (through the policy's eager
interface, which for exportable policies is their traceable mask source); a step then skips
(no tile), runs sparse (the active tiles only) or runs dense (above its crossover). A dense
step reruns whenever one of its inputs changed. This is the oracle every other executor and
every kernel is tested against, and on CPU the faster path.
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.fx as fx

from passrt.kernels.storage import FeatureMap
from passrt.plan.steps import DenseStep, InputStep, Ref, SpatialStep
from passrt.plan.values import cached_names, values_module
from passrt.policies.base import FrameContext

NAME = "reference (pure PyTorch)"


@contextmanager
def _threads_for_frame_test(one: bool):
    """The policy's frame test on one thread while the dense engine answers the frames (the caches stale): its
    frame is likely next, and a test spread over PyTorch's OpenMP threads leaves them spin-waiting on the cores
    ONNX Runtime starts on. Measured with exact:threshold=auto, whose frames ORT answers, median ms of a
    frame with the test on two threads / with this rule / ORT alone: carphone 176x144 15.7 / 7.2 / 5.5,
    franck 360x288 24.2 / 16.6 / 14.1, vtest 768x576 108.0 / 100.4 / 94.8, bigbuckbunny 1280x720 190.0 /
    190.6 / 178.2 (benchmarks/frame_test_threads.py): the fixed cost of a frame handed over, which small
    frames feel most. Otherwise the test keeps every thread: a sparse frame's kernels follow it on the same
    threads (regiondrop's vtest frames: 30.2 ms on two, 31.8 always on one, 30.3 with this rule)."""
    threads = torch.get_num_threads()
    if not one or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@dataclass
class FrameRecord:
    """What one frame executed (an executor's answer to SparseModel's bookkeeping)."""

    refresh: bool
    macs_dense: float
    macs_executed: float
    input_fraction: float | None = None
    layers: dict = field(default_factory=dict)  # label -> figures (reference executor only)
    dense_engine: bool = False  # the outputs came from the dense engine (the caches were not touched)
    filled: bool = False  # a dense frame whose caches the dense engine wrote


@dataclass
class Frame:
    """A frame between :meth:`ReferenceExecutor.begin` and :meth:`~ReferenceExecutor.finish`: its context and
    whether it runs dense, or the dense engine's answer (outputs, record), which ends it."""

    ctx: FrameContext
    refresh: bool
    answered: tuple | None = None
    filled: bool = False  # the dense engine wrote the caches (no step of the plan's spatial steps ran)


class ReferenceExecutor:
    """Runs the plan eagerly.

    With a ``dense_engine`` (a callable frame -> the model's outputs, e.g. ONNX Runtime; it returns
    None when it cannot answer), the second and later of consecutive frames that must be dense (a
    scene cut, not a refresh that was asked for) or are predicted to execute more than ``dense_above``
    of the dense MACs are answered by that engine: faster than recomputing every tile, but it leaves
    the caches out of date, so the next frame that can run sparse is first run dense (its caches
    filled). A dense frame whose caches are filled is the engine's too when it can write them (its
    ``fill``, :meth:`_filled_by_dense_engine`: ONNX Runtime on CPU, 1.25x its plain frame on vtest and
    bigbuckbunny, against 1.35-1.46x for passrt's own, benchmarks/fill_cost.py); otherwise passrt computes it.

    The prediction is the input's changed fraction ``i`` spread as far as the policy's changes
    spread through the network on recent sparse frames: ``1 - (1 - i) ** spread``, the area a random
    change of that size covers after dilation, with ``spread`` fitted to the frames' executed MACs (about
    1 for regiondrop, whose mask is already dilated; several for exact and layerwise on textured motion).
    An isolated scene cut is one filling dense frame (the caches need it either way).

    When the motion stops, catching the caches up costs one dense frame that fills them, slower than the
    engine's plain one; if the calm lasts a frame or two that costs more than it saves. So the engine also answers
    calm frames while the caches are stale, until what sparse frames would have saved over it (the engine's
    time less the predicted share of a dense frame's, summed over those frames) pays for the catch-up's
    extra time (the filling dense frame less the engine's): the ski-rental rule, which never spends more than
    twice what the best choice in hindsight would. The times are measured on the stream (wall clock, the
    latest of each); ``pinned_seconds`` = (filling dense frame, engine frame) fixes them instead. A camera that
    keeps moving runs at the dense engine's speed, plus one filling dense frame when it starts and
    one once it has been calm long enough."""

    name = NAME
    native_kernels = False  # the policies' frame-level rules run as tensor ops

    def __init__(self, plan, policy, dtype: torch.dtype, dense_engine=None, dense_above: float = 0.5):
        self.plan, self.policy = plan, policy
        self.dense_engine, self.dense_above = dense_engine, dense_above
        self.stale = False  # the caches miss frames answered by the dense engine
        self.last_dense = False  # the previous frame had to be dense (or was predicted over dense_above)
        self.spread = 1.0  # how the input's changed fraction grows into executed MACs (see the class docstring)
        self.seconds = {"own": None, "engine": None}  # latest wall time of a dense frame: filling the caches, the engine's
        self.pinned_seconds = None  # (own, engine): fixed instead of measured
        self.credit = 0.0  # seconds sparse frames would have saved over the engine since the caches went stale
        self.macs_dense = sum(s.macs_per_cell * s.shape[1] * s.shape[2] for s in plan.steps
                              if isinstance(s, SpatialStep))
        self.env: dict = {}
        for step in plan.steps:
            if isinstance(step, (SpatialStep, InputStep)):
                self.env[step.name] = self.new_cache(step, dtype)
        self.tiles: dict[str, object] = {}  # label -> last tile mask, "dense", or None
        self._last_tiles = (None, None)  # (a mask, its active tile ids): holding the mask keeps `is` sound
        self._fill_args = None  # (values module, cache buffers) once made; False: the dense engine cannot fill

    def new_cache(self, step, dtype: torch.dtype) -> FeatureMap:
        """The cache of a spatial value (streams batched together get slices of one stacked tensor)."""
        return FeatureMap(*step.shape, dtype=dtype)

    def run(self, x: torch.Tensor, refresh: bool):
        frame = self.begin(x, refresh)
        if frame.answered is not None:
            return frame.answered
        start = time.perf_counter()
        first_fill = self._fill_args is None
        layers = self._filled_by_dense_engine(x, frame.ctx) if frame.refresh else None
        frame.filled = layers is not None
        if layers is None:
            layers = self._run_steps(frame.ctx, frame.refresh)
        # What catching up costs (streams batched together do not measure it: they catch up); not the first fill,
        # which also exported the engine's graph (seconds that would hold off every catch-up until measured again).
        if frame.refresh and not (frame.filled and first_fill):
            self.seconds["own"] = time.perf_counter() - start
        return self.finish(frame, layers)

    def begin(self, x: torch.Tensor, refresh: bool) -> Frame:
        """A frame's decisions before its steps run (:meth:`run` = begin, the steps, :meth:`finish`; streams
        batched together run their steps in between, together: passrt/engine/batched.py)."""
        plan, env, policy = self.plan, self.env, self.policy
        ctx = FrameContext(plan, env, native=self.native_kernels, caches_stale=self.stale)
        forced = refresh  # first frame, reset(), refresh_every, the guard: not a sign of a moving camera
        with _threads_for_frame_test(one=self.stale):
            refresh = policy.begin_frame(ctx, x, refresh)
        dense_now = not forced and (refresh or self.predicted_work(ctx.input_fraction) >= self.dense_above)
        run_of_dense, self.last_dense = self.last_dense, dense_now
        calm_but_stale = self.stale and not forced and not dense_now
        if self.dense_engine is not None and ((dense_now and run_of_dense) or
                                              (calm_but_stale and not self._catch_up_pays(ctx))):
            answered = self._by_dense_engine(x, ctx)
            if answered is not None:
                return Frame(ctx, True, answered)
        if self.stale:  # the policy measured the change against its reference; the caches still need this frame
            refresh, self.stale = True, False
        env[plan.input_name].write_nchw(x)  # the policies' frame tests read x itself
        if refresh:
            ctx.changed[plan.input_name] = FrameContext.FULL
        return Frame(ctx, refresh)

    def finish(self, frame: Frame, layers: dict):
        """The frame's outputs and record, once its steps have run (``layers``: what each spatial step did)."""
        ctx, refresh, policy = frame.ctx, frame.refresh, self.policy
        macs_exec = sum(v["macs_executed"] for v in layers.values())
        if refresh:
            policy.after_refresh(self.plan.steps, self.env)
        else:
            policy.end_frame()
            self._learn_spread(ctx.input_fraction, macs_exec / self.macs_dense if self.macs_dense else 0.0)
        macs_exec += policy.overhead_macs()
        record = FrameRecord(refresh, self.macs_dense, macs_exec, 1.0 if refresh else ctx.input_fraction, layers,
                             filled=frame.filled)
        return fx.node.map_aggregate(self.plan.outputs, self._output_value), record

    def _catch_up_pays(self, ctx: FrameContext) -> bool:
        """Whether this calm frame, the caches being stale, should catch them up (see the class docstring)."""
        own, engine = self.pinned_seconds or (self.seconds["own"], self.seconds["engine"])
        if own is None or engine is None or own <= engine:
            return True
        self.credit = max(0.0, self.credit + engine - self.predicted_work(ctx.input_fraction) * own)
        return self.credit >= own - engine

    def predicted_work(self, input_fraction: float) -> float:
        """The share of the dense MACs a sparse frame with this input change is expected to execute."""
        return 1.0 - (1.0 - min(max(input_fraction, 0.0), 1.0)) ** self.spread

    def _learn_spread(self, input_fraction: float, executed: float) -> None:
        """Fit ``spread`` to a sparse frame (an average over recent frames: halfway to each new one)."""
        if 0.0 < input_fraction < 1.0 and executed > 0.0:
            fitted = math.log1p(-min(executed, 0.999)) / math.log1p(-input_fraction)
            self.spread = max(1.0, (self.spread + fitted) / 2)

    def _run_steps(self, ctx: FrameContext, refresh: bool) -> dict:
        """Run the plan's steps on this frame; return what each spatial step did, by label."""
        layers = {}
        for step in self.plan.steps[1:]:
            if isinstance(step, DenseStep):
                self._run_dense_step(step, ctx, refresh)
            else:
                layers[step.label] = self._layer_record(step, *self._run_spatial(step, ctx, refresh))
        return layers

    def _run_dense_step(self, step: DenseStep, ctx: FrameContext, refresh: bool) -> None:
        """A non-spatial step reruns whenever one of its inputs changed."""
        if refresh or any(ctx.changed.get(s) is not None for s in step.srcs):
            step.run(self.env)
            ctx.changed[step.name] = FrameContext.FULL

    @staticmethod
    def _layer_record(step: SpatialStep, mode: str, active_tiles: int) -> dict:
        total = step.grid[0] * step.grid[1]
        cells = step.shape[1] * step.shape[2]
        computed = cells if mode == "dense" else min(active_tiles * step.tile ** 2, cells)
        return {"kind": step.kind, "mode": mode, "active_fraction": active_tiles / total,
                "skip_rate": 1.0 - computed / cells, "macs_dense": step.macs_per_cell * cells,
                "macs_executed": step.macs_per_cell * computed}

    def _by_dense_engine(self, x: torch.Tensor, ctx: FrameContext):
        start = time.perf_counter()
        outputs = self.dense_engine(x)
        if outputs is None:  # the engine cannot answer (it said why): passrt runs every frame itself
            self.dense_engine = None
            return None
        self.seconds["engine"] = time.perf_counter() - start
        if not self.stale:
            self.stale, self.credit = True, 0.0
        self.tiles = {s.label: "dense" for s in self.plan.steps if isinstance(s, SpatialStep)}
        macs = self.macs_dense + self.policy.overhead_macs()
        return outputs, FrameRecord(True, self.macs_dense, macs, ctx.input_fraction, {}, dense_engine=True)

    def _filled_by_dense_engine(self, x: torch.Tensor, ctx: FrameContext) -> dict | None:
        """A dense frame with every cache written by the dense engine (its optional ``fill(x, values, buffers)``,
        which runs :func:`~passrt.plan.values.values_module` into the caches' rows) and the non-spatial steps
        recomputed from them; what each spatial step did, or None when the engine cannot (passrt computes the
        frame itself). Cheaper than passrt's own dense frame where the engine is faster (ONNX Runtime on CPU)."""
        fill = getattr(self.dense_engine, "fill", None)
        if fill is None or self._fill_args is False:
            return None
        if self._fill_args is None:
            names = cached_names(self.plan)
            self._fill_args = (values_module(self.plan, names), [self.env[n].nhwc() for n in names])
        if not fill(x, *self._fill_args):
            self._fill_args = False
            return None
        for step in self.plan.steps:
            if isinstance(step, DenseStep):
                self._run_dense_step(step, ctx, True)
        layers = {}
        for step in self.plan.steps:
            if isinstance(step, SpatialStep):
                ctx.changed[step.name] = FrameContext.FULL
                self.tiles[step.label] = "dense"
                layers[step.label] = self._layer_record(step, "dense", step.grid[0] * step.grid[1])
        return layers

    def _run_spatial(self, step: SpatialStep, ctx: FrameContext, refresh: bool) -> tuple[str, int]:
        """Run one spatial step densely, sparsely or not at all; return (mode, tiles computed)."""
        if refresh:
            self.run_dense(step)
            ctx.changed[step.name] = FrameContext.FULL
            self.tiles[step.label] = "dense"
            return "dense", step.grid[0] * step.grid[1]
        mode, tiles, active = self.decide(step, ctx)
        if mode == "dense":
            self.run_dense(step)
        elif mode == "sparse":
            self.run_sparse(step, active)
        return self.step_done(step, ctx, mode, tiles, active)

    def decide(self, step: SpatialStep, ctx: FrameContext) -> tuple:
        """(mode, the policy's tiles, the active tile ids) of a step on a sparse frame: 'skipped' (no tile),
        'dense' (above its cost crossover, dense is cheaper) or 'sparse'."""
        tiles = self.policy.step_tiles(step, ctx)
        active = self._active_tiles(tiles)
        n = 0 if active is None else active.numel()
        if n == 0:
            return "skipped", tiles, None
        return ("dense" if n > self.policy.crossover * step.grid[0] * step.grid[1] else "sparse"), tiles, active

    def step_done(self, step: SpatialStep, ctx: FrameContext, mode: str, tiles, active) -> tuple[str, int]:
        """After a step ran as :meth:`decide` said: the policy told, the tiles kept; (mode, tiles computed)."""
        n = active.numel() if mode == "sparse" else step.grid[0] * step.grid[1] if mode == "dense" else 0
        self.policy.step_done(step, ctx, tiles if n else None, mode == "dense")
        self.tiles[step.label] = tiles if mode == "sparse" else (mode if mode == "dense" else None)
        return mode, n

    def _active_tiles(self, tiles) -> torch.Tensor | None:
        """The ids of the active tiles; steps that share one mask (regiondrop: every layer on one tile
        grid) get the ids computed once."""
        if tiles is None:
            return None
        if self._last_tiles[0] is not tiles:
            self._last_tiles = (tiles, tiles.reshape(-1).nonzero().reshape(-1))
        return self._last_tiles[1]

    def run_sparse(self, step: SpatialStep, active: torch.Tensor) -> None:
        """Recompute the ``active`` tiles of one step (the native executor overrides this)."""
        step.run_sparse(self.env, active)

    def run_dense(self, step: SpatialStep) -> None:
        """Recompute every cell of one step (the native executor overrides this)."""
        step.run_dense(self.env)

    def tile_masks(self) -> dict:
        """Per layer (by label), the (Ht, Wt) bool mask of tiles recomputed on the last frame."""
        grids = {s.label: s.grid for s in self.plan.steps if isinstance(s, SpatialStep)}
        out = {}
        for label, v in self.tiles.items():
            if isinstance(v, torch.Tensor):
                out[label] = v.reshape(v.shape[-2:]) > 0
            else:
                out[label] = torch.ones(grids[label], dtype=torch.bool) if v == "dense" else None
        return out

    def _output_value(self, a):
        if not isinstance(a, Ref):
            return a
        v = self.env[a.name]
        v = v.nchw() if isinstance(v, FeatureMap) else v
        # Callers must not be able to modify a cache through what they are given.
        return v.clone() if isinstance(v, torch.Tensor) else v
