"""The executable steps of a sparsified model.

The planner (:mod:`passrt.plan.trace`) turns each node of the traced model into a step:

- :class:`InputStep`: the frame;
- spatial steps, which own a :class:`FeatureMap` cache and can recompute just some tiles:
  :class:`ConvStep` (BatchNorm folded, activations and residual ops fused as an epilogue),
  :class:`PoolStep`, :class:`ResampleStep`, :class:`PointwiseStep`, :class:`ConcatStep`;
- :class:`DenseStep`: anything non-local (heads' reshapes, global pooling, linear layers),
  rerun in full whenever one of its inputs changed.

Every spatial step answers three questions: which output cells a change in its inputs can
reach (``propagate``), how to recompute a set of tiles (``run_sparse``) and how to recompute
everything (``run_dense``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from passrt.plan import masks
from passrt.kernels import reference as K
from passrt.kernels import tables
from passrt.kernels.storage import FeatureMap
from passrt.kernels.tables import TransposedWindow, Window

Env = dict  # value name -> FeatureMap (spatial values) or any Python value (dense values)


@dataclass
class Ref:
    """An argument that is the value of another node.

    ``broadcast`` marks a per-channel operand ((1, C, 1, 1), e.g. squeeze-excite weights):
    it is read whole, not tile by tile.
    """

    name: str
    broadcast: bool = False


@dataclass
class Pointwise:
    """One elementwise op: ``fn(*args, **kwargs)`` where args mix Refs and constants.

    It runs on whole NCHW values (dense path) or on (cells, C) rows of the active tiles
    (sparse path); per-channel constants are kept in both shapes for that.
    """

    fn: Callable
    args: list
    kwargs: dict
    row_args: list = field(default_factory=list)

    def __post_init__(self):
        self.row_args = [_as_rows(a) for a in self.args]

    def refs(self) -> list[str]:
        return [a.name for a in self.args if isinstance(a, Ref)]

    def __call__(self, env: Env, rows: bool, tile: int = 0, active: Optional[torch.Tensor] = None,
                 override: Optional[tuple[str, torch.Tensor]] = None) -> torch.Tensor:
        def value(a):
            if not isinstance(a, Ref):
                return a
            if override is not None and a.name == override[0]:
                return override[1]
            v = env[a.name]
            if a.broadcast:
                v = v.nchw() if isinstance(v, FeatureMap) else v
                return _as_rows(v) if rows else v
            return K.gather_tiles(v, tile, active) if rows else v.nchw()

        return self.fn(*[value(a) for a in (self.row_args if rows else self.args)], **self.kwargs)


def nchw_of(env: Env) -> Callable[[str], Any]:
    return lambda n: env[n].nchw() if isinstance(env[n], FeatureMap) else env[n]


def _as_rows(a):
    if isinstance(a, torch.Tensor) and a.dim() >= 3 and a.shape[-1] == 1 and a.shape[-2] == 1:
        return a.reshape(1, -1)
    return a


class Step:
    """Base class. ``name`` is the value the step produces; ``srcs`` the values it reads."""

    spatial = False

    def __init__(self, name: str, srcs: list[str]):
        self.name, self.srcs = name, srcs
        self.label = name  # shown in stats(); the planner sets the module path


class InputStep(Step):
    spatial = True

    def __init__(self, name: str, shape: tuple[int, int, int]):
        super().__init__(name, [])
        self.shape = shape


class SpatialStep(Step):
    """A step that owns a cache of shape ``shape`` = (C, H, W) and works tile by tile."""

    spatial = True
    macs_per_cell = 0

    def __init__(self, name: str, srcs: list[str], shape: tuple[int, int, int], tile: int):
        super().__init__(name, srcs)
        self.shape, self.tile = shape, tile
        self.grid = tables.tile_grid(shape[1], shape[2], tile)

    @property
    def kind(self) -> str:
        return type(self).__name__.replace("Step", "").lower()

    def input_refs(self) -> list[tuple[str, bool]]:
        """(value name, is per-channel broadcast) of everything this step reads."""
        return [(s, False) for s in self.srcs]

    def propagate(self, changed: list[Optional[torch.Tensor]]) -> Optional[torch.Tensor]:
        """Change map of the output given the change maps of ``input_refs()`` (pointwise by default)."""
        return masks.union(changed)

    def run_sparse(self, env: Env, active: torch.Tensor) -> None:
        raise NotImplementedError

    def run_dense(self, env: Env) -> None:
        raise NotImplementedError


class ConvStep(SpatialStep):
    """A convolution with its fused epilogue, and optionally a fused 1x1 conv after it.

    ``follow``: when a 1x1 conv is the only reader of this conv's output (the projection
    after a depthwise conv in MobileNetV2), both run in one step: the intermediate rows go
    straight into the 1x1 GEMM and are never written to a cache or gathered back. The step's
    output is then the 1x1 conv's (after its own epilogue).
    """

    def __init__(self, name, src, shape, tile, weight, bias, win: Window, groups: int):
        super().__init__(name, [src], shape, tile)
        self.weight, self.bias, self.win, self.groups = weight, bias, win, groups
        self.epilogue: list[Pointwise] = []
        self.follow: Optional[ConvStep] = None
        self.weight_t = weight.view(weight.shape[0], -1).t().contiguous() if weight.shape[2:] == (1, 1) else None
        c_out, c_in_per_group, kh, kw = weight.shape
        self.macs_per_cell = c_out * c_in_per_group * kh * kw

    @property
    def kind(self) -> str:
        if self.groups > 1 and self.weight.shape[1] == 1:
            kind = "conv_dw"
        else:
            kind = "conv1x1" if self.win.kernel == (1, 1) else "conv"
        return kind + "+conv1x1" if self.follow is not None else kind

    @property
    def last(self) -> "ConvStep":
        """The conv whose epilogue new fused ops join."""
        return self.follow if self.follow is not None else self

    def attach_follow(self, conv: "ConvStep") -> None:
        self.follow = conv
        self.shape = conv.shape
        self.macs_per_cell += conv.macs_per_cell

    def fold_batchnorm(self, bn: torch.nn.BatchNorm2d) -> None:
        conv = self.last
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        conv.weight = conv.weight * scale.view(-1, 1, 1, 1)
        conv.bias = (bias - bn.running_mean) * scale + bn.bias.detach()
        if conv.weight_t is not None:
            conv.weight_t = conv.weight.view(conv.weight.shape[0], -1).t().contiguous()

    def input_refs(self):
        convs = [self] if self.follow is None else [self, self.follow]
        extra = [(a.name, a.broadcast) for c in convs for pw in c.epilogue for a in pw.args
                 if isinstance(a, Ref) and a.name != self.name]
        return [(self.srcs[0], False)] + extra

    def propagate(self, changed):
        own = changed[0]
        out = masks.through_window(own, self.win) if own is not None else None
        return masks.union([out] + changed[1:])  # a fused 1x1 maps cells to themselves

    def _epilogue(self, conv: "ConvStep", env: Env, y: torch.Tensor, rows: bool, active=None) -> torch.Tensor:
        # Epilogue ops refer to the running result by this step's name.
        for pw in conv.epilogue:
            y = pw(env, rows, self.tile, active, override=(self.name, y))
        return y

    def run_sparse(self, env, active):
        y = K.conv2d_tiles(env[self.srcs[0]], self.weight, self.bias, self.win, self.groups,
                           self.tile, active, self.weight_t)
        y = self._epilogue(self, env, y, True, active)
        if self.follow is not None:
            f = self.follow
            y = torch.addmm(f.bias, y, f.weight_t) if f.bias is not None else y @ f.weight_t
            y = self._epilogue(f, env, y, True, active)
        K.write_tiles(env[self.name], self.tile, active, y)

    def run_dense(self, env):
        y = self.dense_conv(env[self.srcs[0]].nchw())
        y = self._epilogue(self, env, y, False)
        if self.follow is not None:
            y = self._epilogue(self.follow, env, self.follow.dense_conv(y), False)
        env[self.name].write_nchw(y)

    def dense_conv(self, x: torch.Tensor, weight=None, bias=None) -> torch.Tensor:
        """This conv on a whole NCHW value (``weight``/``bias``: other tensors of the same values, e.g.
        the exported program's named buffers)."""
        weight = self.weight if weight is None else weight
        bias = self.bias if bias is None else bias
        top, bottom, left, right = self.win.pads
        if top == bottom and left == right:
            return F.conv2d(x, weight, bias, self.win.stride, (top, left), self.win.dilation, self.groups)
        return F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias, self.win.stride, 0, self.win.dilation,
                        self.groups)


class TransposedConvStep(SpatialStep):
    """A transposed convolution (decoders: CenterNet, segmentation, pose heads) with BatchNorm folded
    and a fused epilogue, like :class:`ConvStep` (but never a fused 1x1 after it: ``follow`` is None).

    An output cell reads the input cells whose scattered window covers it, so a change spreads
    through the transposed window (``propagate``). ``tile`` is a multiple of the stride
    (:meth:`TransposedWindow.tile_multiple`).
    """

    follow = None

    def __init__(self, name, src, shape, tile, weight, bias, win: TransposedWindow, groups: int):
        super().__init__(name, [src], shape, tile)
        self.weight, self.bias, self.win, self.groups = weight, bias, win, groups
        self.epilogue: list[Pointwise] = []
        c_in, c_out_per_group, kh, kw = weight.shape
        # The MACs of the whole map spread over its output cells (each input cell feeds k*k of them).
        self.macs_per_cell = c_in * c_out_per_group * kh * kw * win.in_h * win.in_w / (shape[1] * shape[2])

    kind = "conv_transpose"

    @property
    def last(self) -> "TransposedConvStep":
        return self

    def fold_batchnorm(self, bn: torch.nn.BatchNorm2d) -> None:
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        bias = self.bias if self.bias is not None else torch.zeros_like(bn.running_mean)
        c_in, c_out_g = self.weight.shape[:2]
        g = self.groups  # weight is (C_in, C_out / groups, kh, kw): output channel = group * C_out/g + j
        w = self.weight.view(g, c_in // g, c_out_g, *self.weight.shape[2:]) * scale.view(g, 1, c_out_g, 1, 1)
        self.weight = w.view(self.weight.shape)
        self.bias = (bias - bn.running_mean) * scale + bn.bias.detach()

    def input_refs(self):
        extra = [(a.name, a.broadcast) for pw in self.epilogue for a in pw.args
                 if isinstance(a, Ref) and a.name != self.name]
        return [(self.srcs[0], False)] + extra

    def propagate(self, changed):
        own = masks.through_transposed_window(changed[0], self.win) if changed[0] is not None else None
        return masks.union([own] + changed[1:])

    def run_sparse(self, env, active):
        y = K.conv_transpose2d_tiles(env[self.srcs[0]], self.weight, self.bias, self.win, self.groups,
                                     self.tile, active)
        for pw in self.epilogue:
            y = pw(env, True, self.tile, active, override=(self.name, y))
        K.write_tiles(env[self.name], self.tile, active, y)

    def run_dense(self, env):
        y = self.dense_conv(env[self.srcs[0]].nchw())
        for pw in self.epilogue:
            y = pw(env, False, override=(self.name, y))
        env[self.name].write_nchw(y)

    def dense_conv(self, x: torch.Tensor) -> torch.Tensor:
        w = self.win
        full = [(n - 1) * s + d * (k - 1) + 1 for n, s, d, k in zip((w.in_h, w.in_w), w.stride, w.dilation, w.kernel)]
        extra = [o - (f - 2 * p) for o, f, p in zip(w.out_size, full, w.pads)]  # PyTorch's output_padding
        if all(0 <= e < max(s, d) for e, s, d in zip(extra, w.stride, w.dilation)):
            return F.conv_transpose2d(x, self.weight, self.bias, w.stride, w.pads, extra, self.groups, w.dilation)
        # Pads PyTorch cannot express (ONNX's asymmetric ones): the full output, cropped or zero-extended.
        y = F.conv_transpose2d(x, self.weight, None, w.stride, 0, 0, self.groups, w.dilation)
        (top, left), (ho, wo) = w.pads, w.out_size
        y = F.pad(y, (-left, left + wo - y.shape[3], -top, top + ho - y.shape[2]))
        return y + self.bias.view(1, -1, 1, 1) if self.bias is not None else y


class PoolStep(SpatialStep):
    def __init__(self, name, src, shape, tile, kind: str, win: Window, count_include_pad=True):
        super().__init__(name, [src], shape, tile)
        self.pool, self.win = kind, win
        self.divisor = K.avg_pool_divisor(win, count_include_pad) if kind == "avg" else None
        self.count_include_pad = count_include_pad

    def propagate(self, changed):
        return masks.through_window(changed[0], self.win) if changed[0] is not None else None

    def run_sparse(self, env, active):
        y = K.pool2d_tiles(env[self.srcs[0]], self.pool, self.win, self.tile, active, self.divisor)
        K.write_tiles(env[self.name], self.tile, active, y)

    def run_dense(self, env):
        env[self.name].write_nchw(self.dense(env[self.srcs[0]].nchw()))

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.win.pads[0], self.win.pads[2])
        if self.pool == "max":
            return F.max_pool2d(x, self.win.kernel, self.win.stride, pad, self.win.dilation, self.win.ceil_mode)
        return F.avg_pool2d(x, self.win.kernel, self.win.stride, pad, self.win.ceil_mode, self.count_include_pad)


class ResampleStep(SpatialStep):
    def __init__(self, name, src, shape, tile, in_hw: tuple[int, int], mode: str, align_corners: bool,
                 scales: tuple = (None, None)):
        super().__init__(name, [src], shape, tile)
        self.in_hw, self.mode, self.align_corners = in_hw, mode, align_corners
        self.scales = scales  # input/output ratio per axis as PyTorch computes it, or None

    def propagate(self, changed):
        if changed[0] is None:
            return None
        src, _ = tables.resample_sources(*self.in_hw, self.shape[1], self.shape[2], self.mode,
                                         self.align_corners, *self.scales)
        flat = torch.cat([changed[0].reshape(-1), changed[0].new_zeros(3)])
        cells = flat[src[:-3]].amax(1)
        return cells.view(1, 1, self.shape[1], self.shape[2])

    def run_sparse(self, env, active):
        y = K.resample_tiles(env[self.srcs[0]], self.shape[1], self.shape[2], self.mode,
                             self.align_corners, self.scales, self.tile, active)
        K.write_tiles(env[self.name], self.tile, active, y)

    def run_dense(self, env):
        # Gathering through the same tables keeps dense and sparse results bit-identical.
        every = torch.arange(self.grid[0] * self.grid[1])
        self.run_sparse(env, every)


class MoveStep(SpatialStep):
    """Pure data movement: padding (any mode), cropping and slicing (channels too), pixel (un)shuffle.

    ``fn`` is the op itself; :func:`tables.move_table` learns from it, once per input size, which
    input value (or constant) each output value is, so every such op is one gather, and a change
    moves with the values it reads.
    """

    def __init__(self, name, src, shape, tile, in_shape: tuple[int, int, int], fn: Callable, what: str):
        super().__init__(name, [src], shape, tile)
        self.fn, self.what = fn, what
        self.table = tables.move_table(fn, in_shape, shape)
        self._cells = None  # (H'*W', K) input cells read, for propagate (built on first use)
        self.in_channels = in_shape[0]

    kind = "move"

    def propagate(self, changed):
        if changed[0] is None:
            return None
        if self._cells is None:
            self._cells = self.table.cell_rows(self.in_channels)[:-3]  # the zero row is row H*W: unchanged
        flat = torch.cat([changed[0].reshape(-1), changed[0].new_zeros(1)])
        return flat[self._cells].amax(1).view(1, 1, self.shape[1], self.shape[2])

    def run_sparse(self, env, active):
        y = K.move_tiles(env[self.srcs[0]], self.table, self.shape[1], self.shape[2], self.tile, active)
        K.write_tiles(env[self.name], self.tile, active, y)

    def run_dense(self, env):
        every = torch.arange(self.grid[0] * self.grid[1])
        self.run_sparse(env, every)


class PointwiseStep(SpatialStep):
    """A standalone elementwise op (one that could not be fused into a conv)."""

    def __init__(self, name, shape, tile, op: Pointwise):
        super().__init__(name, op.refs(), shape, tile)
        self.op = op

    def input_refs(self):
        return [(a.name, a.broadcast) for a in self.op.args if isinstance(a, Ref)]

    def run_sparse(self, env, active):
        y = self.op(env, True, self.tile, active)
        K.write_tiles(env[self.name], self.tile, active, y)

    def run_dense(self, env):
        env[self.name].write_nchw(self.op(env, False))


class ConcatStep(SpatialStep):
    """Concatenation along channels."""

    def run_sparse(self, env, active):
        y = torch.cat([K.gather_tiles(env[s], self.tile, active) for s in self.srcs], 1)
        K.write_tiles(env[self.name], self.tile, active, y)

    def run_dense(self, env):
        env[self.name].write_nchw(torch.cat([env[s].nchw() for s in self.srcs], 1))


class DenseStep(Step):
    """A node run as is on whole values, whenever any of its inputs changed.

    ``to_feature_map`` is set when a spatial step consumes its (1, C, H, W) result.
    """

    def __init__(self, name, srcs, call: Callable[[Callable[[str], Any]], Any], what: str):
        super().__init__(name, srcs)
        self.call, self.what = call, what
        self.to_feature_map = False

    def run(self, env: Env) -> None:
        value = self.call(nchw_of(env))
        if self.to_feature_map:
            if self.name not in env:
                env[self.name] = FeatureMap.from_nchw(value)
            else:
                env[self.name].write_nchw(value)
        else:
            env[self.name] = value
