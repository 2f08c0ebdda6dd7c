"""The native executor on CUDA: the plan's convs in passrt's NHWC tile kernels (kernels/tiles_nhwc.cu),
the masks on the device, no host synchronisation inside a frame, the frame replayed as a CUDA graph.

The CPU native executor (:mod:`passrt.engine.native`) asks the policy on the host which tiles run
(``nonzero`` of each mask, Python per step); on a GPU each such question is a host round trip that
costs more than the layer. Here the policy's *mask source* (the traceable rule the op executor runs, and the
exported graph for regiondrop and pass) computes every tile mask on the device, and each
conv step gets its tiles as a fixed-length id list, ``-1`` for an inactive tile, which
``passrt::conv_tiles`` compacts into a cell list on the device (tileCellsCuda: the count never
comes back; persistent grids stride over it). So every shape and address of a frame is fixed: the
frame is captured once in a CUDA graph and replayed (:class:`~passrt.engine.graphs.FrameGraphs`).

- conv steps the kernels compute (:func:`passrt.engine.native.tile_conv`): one ``conv_tiles`` call,
  fp32 or fp16 storage (fp16: tensor cores on sm_70+), state updated in place in the NHWC caches;
- per-channel affine steps (an input normalisation x*2-1: :func:`passrt.engine.native.tile_affine`):
  one ``affine_tiles`` call on the same id list;
- other spatial steps (pooling, upsampling, concatenation, convs with epilogues the kernels lack):
  computed densely and kept on the active tiles (``where``), as the exported program does: the same
  values, traffic over the whole map (SSDLite has none);
- dense steps (heads' reshapes and concatenations): run every frame.

Masks are computed in float32 for policies whose rule reads only the frame (``common_tiles``: regiondrop,
PASS's common gate), whatever the storage dtype: an fp16 engine then takes the same tile decisions as the
fp32 reference, and only its arithmetic differs; a rule that reads layer features (PASS's paper gates)
runs in the storage dtype.

A refresh (first frame, reset) and a scene cut are the mask source's ``full`` flag: every tile is
active, so a dense frame runs through the same kernels (no branch on the host). One synchronisation
per frame remains, after the graph: reading the executed-MAC fraction for the frame's record.

On CPU tensors the same executor runs with the CPU kernels (ids compacted with ``nonzero``, no
graphs): that is how its logic is tested on machines without a GPU (tests/engine/test_native_cuda.py).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
import torch.fx as fx

from passrt.engine.graphs import FrameGraphs
from passrt.engine.native import tile_affine, tile_conv
from passrt.engine.program import _epilogue, dense_value
from passrt.engine.reference import FrameRecord, ReferenceExecutor
from passrt.kernels import native
from passrt.kernels.storage import FeatureMap
from passrt.plan.masks import cells_of
from passrt.plan.steps import (ConvStep, DenseStep, InputStep, Pointwise, PointwiseStep, SpatialStep,
                               TransposedConvStep)

NAME = "native (NHWC tile kernels, CUDA)"
WARMUP_FRAMES = 2  # eager frames before the capture: the first is a refresh, the second a sparse frame


class DeviceNativeExecutor:
    """Runs a plan whose policy has a mask source, on ``device`` (CUDA; CPU for tests), in ``dtype``."""

    native_kernels = False  # the policy's frame rule runs as its mask source's tensor ops

    def __init__(self, plan, policy, device, dtype: torch.dtype, cuda_graphs: bool = True):
        self.plan, self.policy = plan, policy
        self.device, self.dtype = torch.device(device), dtype
        self.cuda = self.device.type == "cuda"
        mask_dtype = torch.float32 if policy.common_tiles else dtype  # see the module docstring
        self.masks = policy.mask_source(plan).to(self.device, mask_dtype)
        spatial = {s.name: tuple(s.shape) for s in plan.steps if isinstance(s, (SpatialStep, InputStep))}
        self.env: dict = {name: FeatureMap(*shape, dtype=dtype, device=self.device) for name, shape in spatial.items()}
        self.convs: dict = {}  # step name -> TileConv on the device
        self.affines: dict = {}  # step name -> (its input's name, TileAffine on the device)
        self.steps: list = []  # the plan's steps after the input, each ready to run here
        for step in plan.steps[1:]:
            if isinstance(step, ConvStep):
                conv = tile_conv(step, spatial)
                if conv is not None:
                    self.convs[step.name] = _conv_on(conv, self.device, dtype)
            elif isinstance(step, PointwiseStep):
                found = tile_affine(step, spatial)
                if found is not None:
                    affine = found[1]
                    self.affines[step.name] = (found[0], dataclasses.replace(
                        affine, scale=affine.scale.to(self.device, torch.float32).contiguous(),
                        shift=affine.shift.to(self.device, torch.float32).contiguous()))
            native_step = step.name in self.convs or step.name in self.affines
            own = native_step or isinstance(step, DenseStep)  # the others get copies with tensors on the device
            self.steps.append(step if own else _step_on(step, self.device, dtype))
        self.spatial = [s for s in self.steps if isinstance(s, SpatialStep)]
        cells = [s.shape[1] * s.shape[2] for s in self.spatial]
        self.macs_dense = float(sum(s.macs_per_cell * c for s, c in zip(self.spatial, cells)))
        self._weights = {s.name: s.macs_per_cell / self.macs_dense for s in self.spatial} if self.macs_dense else {}
        # Buffers with fixed addresses: the frame, the refresh flag and the mask source's states (mask dtype).
        self.frame = torch.zeros(plan.input_shape, device=self.device, dtype=mask_dtype)
        self.flag = torch.ones(1, device=self.device, dtype=mask_dtype)
        self.states = [torch.zeros(shape, device=self.device, dtype=mask_dtype) for shape in self.masks.state_shapes]
        self._ids: dict = {}  # (Ht, Wt) -> every tile id of the grid, on the device
        self.last_masks: dict = {}  # label -> this frame's (1, 1, Ht, Wt) tile mask (device)
        self.summary: Optional[torch.Tensor] = None  # [active fraction, input fraction, full] of the frame
        self.graphs = FrameGraphs(WARMUP_FRAMES, enabled=cuda_graphs and self.cuda, what="native executor's frame")
        self.name = NAME if self.cuda else "native (NHWC tile kernels, device path on CPU)"

    # ---- a frame --------------------------------------------------------------------------------
    def run(self, x: torch.Tensor, refresh: bool):
        self.frame.copy_(x)
        self.flag.fill_(1.0 if refresh else 0.0)
        self.graphs(None, self._frame)
        active, fraction, full = self.summary.tolist()  # the frame's one synchronisation
        record = FrameRecord(bool(full), self.macs_dense, active * self.macs_dense, fraction)
        return fx.node.map_aggregate(self.plan.outputs, self._output_value), record

    def _frame(self) -> None:
        """One frame's work, reading only ``frame``, ``flag`` and the states: what the graph captures."""
        env, masks = self.env, self.masks
        env[self.plan.input_name].write_nchw(self.frame)
        value = lambda name: env[name].nchw() if isinstance(env[name], FeatureMap) else env[name]  # noqa: E731
        new_states = list(masks.begin(self.frame, self.flag, self.states))
        active = torch.zeros(1, device=self.device, dtype=torch.float32)
        ids: dict = {}  # (H, W, tile) -> this frame's tile ids (-1: inactive), made once per grid
        for step in self.steps:
            if isinstance(step, DenseStep):
                step.run(env)
                continue
            mask = masks.step_mask(step, value)
            self.last_masks[step.label] = mask
            if step.name in self.convs or step.name in self.affines:
                key = (step.shape[1], step.shape[2], step.tile)
                if key not in ids:
                    ids[key] = self._tile_ids(step, mask)
                if step.name in self.convs:
                    self.convs[step.name](env[step.srcs[0]], env[step.name], step.tile, ids[key], env)
                else:
                    src, affine = self.affines[step.name]
                    affine(env[src], env[step.name], step.tile, ids[key])
            else:
                out = env[step.name]
                keep = cells_of(mask, step.tile, step.shape[1], step.shape[2]) > 0.5
                out.write_nchw(torch.where(keep, self._dense(step, value), out.nchw()))
            cells = float(step.shape[1] * step.shape[2])
            computed = torch.clamp(mask.sum().float() * float(step.tile ** 2), max=cells)
            active = active + computed.reshape(1) * self._weights[step.name]
        overhead = masks.overhead_macs()
        active = active + (overhead.float().reshape(1) if isinstance(overhead, torch.Tensor) else overhead) / \
            self.macs_dense
        new_states += list(masks.end())
        # The states keep their addresses (the graph reads them): copy, through a clone where a new state is
        # an old one (regiondrop's frame history rotates: the new prev2 is the old prev).
        olds = {s.data_ptr() for s in self.states}
        staged = [n.clone() if n.data_ptr() in olds else n for n in new_states]
        for state, new in zip(self.states, staged):
            state.copy_(new)
        fraction = getattr(masks, "fraction", None)
        fraction = fraction.float().reshape(1) if isinstance(fraction, torch.Tensor) else active
        self.summary = torch.cat([active, fraction, masks.full.float().reshape(1)])

    def _tile_ids(self, step: SpatialStep, mask: torch.Tensor) -> torch.Tensor:
        """The grid's tile ids with -1 for inactive tiles (a fixed length: no host sync); on CPU, whose
        kernels take only valid ids, the active ids (compacted on the host, where that costs nothing)."""
        flat = mask.reshape(-1) > 0.5
        if not self.cuda:
            return flat.nonzero().reshape(-1)
        if step.grid not in self._ids:
            self._ids[step.grid] = torch.arange(step.grid[0] * step.grid[1], device=self.device)
        every = self._ids[step.grid]
        return torch.where(flat, every, torch.full_like(every, -1))

    def _dense(self, step: SpatialStep, value) -> torch.Tensor:
        """A step the kernels do not run, on whole NCHW values."""
        values = _Values(value)
        if not isinstance(step, ConvStep):
            return dense_value(step, values)
        y = _epilogue(step, step.name, step.dense_conv(value(step.srcs[0])), values)
        if step.follow is not None:
            y = _epilogue(step.follow, step.name, step.follow.dense_conv(y), values)
        return y

    # ---- what SparseModel asks --------------------------------------------------------------------
    _output_value = ReferenceExecutor._output_value  # a copy of each output: the caches and graph buffers stay private

    def tile_masks(self) -> dict:
        """Per layer (by label), the (Ht, Wt) bool mask of tiles recomputed on the last frame (read from the
        device only when asked)."""
        return {label: m.reshape(m.shape[-2:]).cpu() > 0.5 for label, m in self.last_masks.items()}

    def native_fraction(self) -> float:
        """The share of the plan's conv MACs (per cell) that the tile kernels run."""
        convs = [s for s in self.steps if isinstance(s, ConvStep)]
        total = sum(s.macs_per_cell * s.shape[1] * s.shape[2] for s in convs)
        done = sum(s.macs_per_cell * s.shape[1] * s.shape[2] for s in convs if s.name in self.convs)
        return done / total if total else 1.0


class _Values:
    """name -> NCHW value, as dense_value and the epilogue helpers index it."""

    def __init__(self, value):
        self._value = value

    def __getitem__(self, name):
        return self._value(name)


def _conv_on(conv: native.TileConv, device, dtype) -> native.TileConv:
    """A TileConv's tensors on the device: weights in the storage dtype, biases in float32 (the kernels'
    epilogue type)."""
    move = lambda t, d: t.to(device, d).contiguous() if t is not None else None  # noqa: E731
    return dataclasses.replace(conv, weight=move(conv.weight, dtype), bias=move(conv.bias, torch.float32),
                               follow_weight=move(conv.follow_weight, dtype),
                               follow_bias=move(conv.follow_bias, torch.float32))


def _step_on(step: SpatialStep, device, dtype) -> SpatialStep:
    """A copy of a step the kernels do not run, with its tensors (weights, per-channel constants of its
    elementwise ops) on the device: the plan (shared by streams and executors) is left as it is."""
    step = _copy_with_tensors(step, device, dtype)
    if isinstance(step, (ConvStep, TransposedConvStep)):
        step.epilogue = [_copy_with_tensors(pw, device, dtype) for pw in step.epilogue]
        if getattr(step, "follow", None) is not None:
            step.follow = _step_on(step.follow, device, dtype)
    if hasattr(step, "op") and isinstance(step.op, Pointwise):
        step.op = _copy_with_tensors(step.op, device, dtype)
    return step


def _copy_with_tensors(obj, device, dtype):
    import copy

    obj = copy.copy(obj)
    for name, v in list(vars(obj).items()):
        if isinstance(v, torch.Tensor) and v.is_floating_point():
            setattr(obj, name, v.to(device, dtype))
        elif isinstance(v, list) and name in ("args", "row_args"):
            setattr(obj, name, [a.to(device, dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                                for a in v])
    return obj


__all__ = ["DeviceNativeExecutor"]
