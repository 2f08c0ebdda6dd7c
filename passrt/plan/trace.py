"""From an nn.Module to a list of steps: trace with torch.fx, classify every node, fuse.

Planning happens per input resolution (index tables and cache sizes depend on it). It
runs the traced model once to learn every value's shape, then walks the nodes in order:

- convolutions become :class:`ConvStep`; a BatchNorm right after is folded into the
  weights, and the elementwise ops that follow (activations, a residual add) are fused
  into the conv's epilogue when nothing else reads the intermediate value;
- pooling, upsampling, elementwise ops and channel concatenation become spatial steps;
- known non-local or shape-changing ops become :class:`DenseStep` (correct, not faster);
- anything else is refused with an error that names the op.
"""

from __future__ import annotations

import copy
import operator
import types
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn
from torch.fx.passes.shape_prop import ShapeProp

from passrt.plan.steps import (ConcatStep, ConvStep, DenseStep, InputStep, MoveStep, Pointwise, PointwiseStep,
                                 PoolStep, Ref, ResampleStep, SpatialStep, Step, TransposedConvStep)
from passrt.errors import PassrtError
from passrt.kernels.tables import TransposedWindow, Window
from passrt.nn import Conv2dSame

_IN_PLACE = {operator.iadd: operator.add, operator.isub: operator.sub,
             operator.imul: operator.mul, operator.itruediv: operator.truediv}

ELEMENTWISE_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.neg,
    torch.add, torch.sub, torch.mul, torch.div, torch.neg, torch.abs, torch.maximum, torch.minimum,
    torch.relu, torch.sigmoid, torch.tanh, torch.clamp,
    F.relu, F.relu6, F.hardswish, F.hardsigmoid, F.silu, F.sigmoid, F.tanh, F.leaky_relu,
    F.gelu, F.elu, F.hardtanh, F.mish,
    torch.exp, torch.sqrt, torch.log, torch.erf, torch.reciprocal, torch.pow, torch.floor, torch.ceil, F.softplus,
}
ELEMENTWISE_METHODS = {"add", "sub", "mul", "div", "neg", "abs", "relu", "sigmoid", "tanh",
                       "clamp", "clamp_min", "clamp_max"}
ACTIVATION_MODULES = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.Sigmoid,
                      nn.Tanh, nn.LeakyReLU, nn.GELU, nn.ELU, nn.Mish, nn.Hardtanh, nn.PReLU)
IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout2d)
IDENTITY_METHODS = {"contiguous"}

# Non-local or shape-changing ops: run densely; everything downstream of a change is recomputed.
DENSE_FUNCTIONS = {
    getattr, operator.getitem, operator.matmul, torch.flatten, torch.reshape, torch.permute,
    torch.transpose, torch.squeeze, torch.unsqueeze, torch.cat, torch.concat, torch.stack,
    torch.mean, torch.sum, torch.amax, torch.softmax, torch.matmul, torch.split, torch.chunk,
    F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.linear, F.softmax, F.log_softmax,
    F.interpolate, F.conv2d, F.max_pool2d, F.avg_pool2d, F.pad, F.normalize,
}
DENSE_METHODS = {"view", "reshape", "permute", "flatten", "transpose", "size", "squeeze", "unsqueeze",
                 "mean", "sum", "amax", "max", "softmax", "split", "chunk", "float", "to", "expand",
                 "repeat", "sigmoid", "exp", "view_as", "reshape_as", "unflatten", "dim"}
DENSE_MODULES = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten, nn.Unflatten,
                 nn.Softmax, nn.LogSoftmax, nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.Upsample,
                 nn.BatchNorm2d, nn.ZeroPad2d, nn.ConstantPad2d)


# Pure data movement (each output value is one input value or a constant): MoveStep.
MOVE_MODULES = (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d, nn.PixelShuffle,
                nn.PixelUnshuffle)
MOVE_FUNCTIONS = {F.pad, F.pixel_shuffle, F.pixel_unshuffle, torch.pixel_shuffle, torch.pixel_unshuffle,
                  torch.narrow, torch.flip, operator.getitem}
MOVE_METHODS = {"narrow", "flip", "__getitem__"}
# Ops that cut a value into a tuple (channel groups in CSP/C2f blocks): each item taken is a move.
SPLIT_FUNCTIONS = {torch.chunk, torch.split, torch.tensor_split}
SPLIT_METHODS = {"chunk", "split", "tensor_split"}
# Softmax over channels is per cell (MTCNN's face/non-face scores): run as an elementwise op.
CHANNEL_SOFTMAX = {F.softmax, torch.softmax, F.log_softmax, torch.log_softmax}


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        # Conv2d subclasses (Conv2dSame) have shape-dependent forwards: keep them opaque.
        return isinstance(m, nn.Conv2d) or super().is_leaf_module(m, qualname)


def trace(model: nn.Module) -> fx.GraphModule:
    # A model's own dense helpers (imported ONNX graphs' shape arithmetic) stay single calls:
    # traced into, their Python on shapes and values would fail on proxies.
    helpers = tuple(f for f in getattr(model, "passrt_dense_ops", ()) if isinstance(f, types.FunctionType))
    try:
        graph = _Tracer(autowrap_functions=helpers).trace(model)
    except Exception as e:  # fx raises many types; the user needs to know which model and why
        raise PassrtError(
            f"cannot trace {type(model).__name__} with torch.fx ({type(e).__name__}: {e}); "
            "sparsify needs a forward without data-dependent Python control flow") from e
    return fx.GraphModule(model, graph)


@dataclass
class Plan:
    steps: list[Step]
    input_name: str
    input_shape: tuple[int, int, int, int]
    outputs: Any  # the output node's argument structure with node names as Ref
    graph: fx.GraphModule | None = None  # the traced model the plan was made from
    value_nodes: dict[str, str] = field(default_factory=dict)  # env name -> the node that computes its final value


def build_plan(gm: fx.GraphModule, example: torch.Tensor, tile_for: Callable[[int], int],
               dense_ops: tuple = ()) -> Plan:
    """Plan ``gm`` for inputs shaped like ``example``; ``tile_for(stride)`` picks tile sizes."""
    with torch.no_grad():
        ShapeProp(gm).propagate(example)
    return _Planner(gm, example, tile_for, dense_ops).run()


def _shape(node: fx.Node):
    meta = node.meta.get("tensor_meta")
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def _op_name(node: fx.Node, gm: fx.GraphModule) -> str:
    if node.op == "call_module":
        return f"module {type(gm.get_submodule(node.target)).__name__} ('{node.target}')"
    if node.op == "call_method":
        return f"method Tensor.{node.target}"
    return f"function {getattr(node.target, '__module__', '')}.{getattr(node.target, '__name__', node.target)}"


class _Planner:
    def __init__(self, gm, example, tile_for, dense_ops):
        self.gm, self.tile_for, self.dense_ops = gm, tile_for, tuple(dense_ops)
        self.frame_h = example.shape[2]
        self.steps: list[Step] = []
        self.canon: dict[str, str] = {}  # node name -> name of the value in the engine's env
        self.producer: dict[str, Step] = {}  # env name -> step
        self.tail: dict[str, str] = {}  # conv step name -> last node fused into it
        self.consts: dict[str, Any] = {}
        self.splits: dict[str, tuple[fx.Node, Callable]] = {}  # tuple-valued node -> (its input, the op)
        self.input_name = None

    def run(self) -> Plan:
        outputs = None
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self._input(node)
            elif node.op == "get_attr":
                self.consts[node.name] = _fetch_attr(self.gm, node.target)
            elif node.op == "output":
                outputs = fx.node.map_arg(node.args[0], lambda n: Ref(self.canon[n.name]))
            else:
                self._node(node)
        # A value's last alias in graph order is its final value (a conv's folded BatchNorm, fused activation,
        # residual add or fused 1x1 conv come after the conv).
        value_nodes = {name: node for node, name in self.canon.items()}
        return Plan(self.steps, self.input_name, self._input_shape, outputs, self.gm, value_nodes)

    # ---- helpers -------------------------------------------------------------------------
    def _input(self, node):
        if self.input_name is not None:
            raise PassrtError("sparsify supports models with one image input; "
                              f"'{node.name}' is a second one")
        shape = _shape(node)
        if shape is None or len(shape) != 4 or shape[0] != 1:
            raise PassrtError(f"the model input must be one (1, C, H, W) tensor, got {shape}")
        self.input_name, self._input_shape = node.name, shape
        self.canon[node.name] = node.name
        step = InputStep(node.name, shape[1:])
        self.steps.append(step)
        self.producer[node.name] = step

    def _is_spatial(self, n) -> bool:
        return isinstance(n, fx.Node) and isinstance(self.producer.get(self.canon.get(n.name)),
                                                     (SpatialStep, InputStep))

    def _spatial_ref(self, n: fx.Node) -> Ref | None:
        """A Ref to ``n`` as a feature map, converting a dense (1, C, H, W) value if needed."""
        if self._is_spatial(n):
            return Ref(self.canon[n.name])
        producer = self.producer.get(self.canon.get(n.name)) if isinstance(n, fx.Node) else None
        shape = _shape(n) if isinstance(n, fx.Node) else None
        if isinstance(producer, DenseStep) and shape is not None and len(shape) == 4 and shape[0] == 1:
            producer.to_feature_map = True
            return Ref(self.canon[n.name])
        return None

    def _arg(self, a):
        if isinstance(a, fx.Node):
            return self.consts[a.name] if a.name in self.consts else Ref(self.canon[a.name])
        return a

    def _tile(self, shape) -> int:
        stride = max(1, round(self.frame_h / shape[2]))
        return self.tile_for(stride)

    def _add(self, node: fx.Node, step: Step):
        # Users know layers by their module path ('backbone.3.conv'); fx names the rest.
        step.label = node.target if node.op == "call_module" else node.name
        self.steps.append(step)
        self.canon[node.name] = step.name
        self.producer[step.name] = step

    def _alias(self, node: fx.Node, target: fx.Node):
        self.canon[node.name] = self.canon[target.name]

    # ---- classification ---------------------------------------------------------------
    def _node(self, node: fx.Node):
        target = _IN_PLACE.get(node.target, node.target)
        module = self.gm.get_submodule(node.target) if node.op == "call_module" else None
        x = node.args[0] if node.args else None
        shape = _shape(node)
        if module is not None and isinstance(module, IDENTITY_MODULES) or \
                node.op == "call_method" and target in IDENTITY_METHODS:
            return self._alias(node, x)
        if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros" and self._spatial_ref(x):
            return self._conv(node, module)
        if isinstance(module, nn.ConvTranspose2d) and module.padding_mode == "zeros" and self._spatial_ref(x) \
                and len(node.args) == 1 and not node.kwargs:  # forward(x, output_size): the shape says it all
            return self._conv_transpose(node, module)
        if isinstance(module, nn.BatchNorm2d) and self._fold_batchnorm(node, module):
            return
        if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)) and self._spatial_ref(x) and self._pool(node, module):
            return
        if isinstance(module, nn.Upsample) and self._spatial_ref(x) and self._resample(
                node, module.mode, module.align_corners, module.scale_factor):
            return
        if node.op == "call_function" and target in (F.interpolate,) and self._spatial_ref(x):
            kw = dict(zip(["input", "size", "scale_factor", "mode", "align_corners"], node.args))
            kw.update(node.kwargs)
            if not kw.get("recompute_scale_factor") and not kw.get("antialias") and self._resample(
                    node, kw.get("mode", "nearest"), kw.get("align_corners"), kw.get("scale_factor")):
                return
        if node.op == "call_function" and target in (torch.cat, torch.concat) and self._concat(node):
            return
        move = self._move_fn(node, module, target)
        if move is not None and self._move(node, *move):
            return
        if self._split(node, target):
            return self._dense(node, module, target)  # its items are moves; anything else reads it densely
        pointwise = self._pointwise(node, module, target)
        if pointwise is not None and self._elementwise(node, pointwise, shape):
            return
        if self._known_dense(node, module, target):
            return self._dense(node, module, target)
        raise PassrtError(
            f"sparsify does not support {_op_name(node, self.gm)} (node '{node.name}'); "
            "if it is safe to run densely, pass it in sparsify(..., dense_ops=[...])")

    def _move_fn(self, node, module, target):
        """(input node, fn) when ``node`` is pure data movement of one spatial value, else None."""
        if module is not None:
            return (node.args[0], module) if isinstance(module, MOVE_MODULES) and len(node.args) == 1 else None
        if not node.args or not isinstance(node.args[0], fx.Node):
            return None
        x, rest, kwargs = node.args[0], node.args[1:], dict(node.kwargs)
        if _has_node((rest, kwargs)):  # e.g. a crop to another value's size: run dense
            return None
        if target is operator.getitem and x.name in self.splits:
            src, cut = self.splits[x.name]
            return src, lambda t, _cut=cut, _i=rest[0]: _cut(t)[_i]
        if node.op == "call_function" and target in MOVE_FUNCTIONS:
            return x, lambda t, _f=target: _f(t, *rest, **kwargs)
        if node.op == "call_method" and target in MOVE_METHODS:
            return x, lambda t, _m=target: getattr(t, _m)(*rest, **kwargs)
        return None

    def _move(self, node, x, fn) -> bool:
        shape, in_shape = _shape(node), _shape(x) if isinstance(x, fx.Node) else None
        if shape is None or len(shape) != 4 or shape[0] != 1 or in_shape is None or len(in_shape) != 4:
            return False
        ref = self._spatial_ref(x)
        if ref is None:
            return False
        what = _op_name(node, self.gm)
        self._add(node, MoveStep(node.name, ref.name, shape[1:], self._tile(shape), in_shape[1:], fn, what))
        return True

    def _split(self, node, target) -> bool:
        """Remember a chunk/split of a feature map, so that the items taken from it become moves."""
        is_split = node.op == "call_function" and target in SPLIT_FUNCTIONS or \
            node.op == "call_method" and target in SPLIT_METHODS
        if not is_split or not node.args or not isinstance(node.args[0], fx.Node) or _has_node(
                (node.args[1:], node.kwargs)):
            return False
        x = node.args[0]
        shape = _shape(x)
        if shape is None or len(shape) != 4 or shape[0] != 1:
            return False
        rest, kwargs = node.args[1:], dict(node.kwargs)
        if node.op == "call_function":
            self.splits[node.name] = (x, lambda t, _f=target: _f(t, *rest, **kwargs))
        else:
            self.splits[node.name] = (x, lambda t, _m=target: getattr(t, _m)(*rest, **kwargs))
        return True

    def _known_dense(self, node, module, target) -> bool:
        if module is not None:
            return isinstance(module, DENSE_MODULES + ACTIVATION_MODULES) or isinstance(module, self.dense_ops)
        if node.op == "call_method":
            return target in DENSE_METHODS or target in ELEMENTWISE_METHODS or target in self.dense_ops
        return target in DENSE_FUNCTIONS or target in ELEMENTWISE_FUNCTIONS or target in self.dense_ops

    def _dense(self, node, module, target):
        srcs = sorted({self.canon[n.name] for n in node.all_input_nodes if n.name not in self.consts})
        consts, gm = self.consts, self.gm

        def call(lookup, node=node, module=module, target=target):
            resolve = lambda n: consts[n.name] if n.name in consts else lookup(self.canon[n.name])
            args = fx.node.map_arg(node.args, resolve)
            kwargs = fx.node.map_arg(node.kwargs, resolve)
            if module is not None:
                return module(*args, **kwargs)
            if node.op == "call_method":
                return getattr(args[0], target)(*args[1:], **kwargs)
            return target(*args, **kwargs)

        self._add(node, DenseStep(node.name, srcs, call, _op_name(node, gm)))

    def _conv(self, node, m: nn.Conv2d):
        in_shape, out_shape = _shape(node.args[0]), _shape(node)
        h, w = in_shape[2:]
        if isinstance(m, Conv2dSame):
            pads = m.pads(h, w)
        elif m.padding == "valid":
            pads = (0, 0, 0, 0)
        elif m.padding == "same":  # PyTorch puts the odd pixel after, like TF
            total = [d * (k - 1) for k, d in zip(m.kernel_size, m.dilation)]
            pads = (total[0] // 2, total[0] - total[0] // 2, total[1] // 2, total[1] - total[1] // 2)
        else:
            ph, pw = _pair(m.padding)
            pads = (ph, ph, pw, pw)
        win = Window(h, w, _pair(m.kernel_size), _pair(m.stride), _pair(m.dilation), pads)
        assert win.out_size == tuple(out_shape[2:]), (node.name, win.out_size, out_shape)
        bias = m.bias.detach().clone() if m.bias is not None else None
        step = ConvStep(node.name, self._spatial_ref(node.args[0]).name, out_shape[1:], self._tile(out_shape),
                        m.weight.detach().clone(), bias, win, m.groups)
        producer = self._fusable_conv(node.args[0])
        if isinstance(producer, ConvStep) and producer.follow is None and win.kernel == (1, 1) \
                and win.stride == (1, 1) and win.pads == (0, 0, 0, 0) and m.groups == 1:
            producer.attach_follow(step)  # the 1x1 conv is the only reader: fuse it
            self._alias(node, node.args[0])
            self.tail[producer.name] = node.name
            return
        self._add(node, step)
        self.tail[step.name] = node.name

    def _conv_transpose(self, node, m: nn.ConvTranspose2d):
        in_shape, out_shape = _shape(node.args[0]), _shape(node)
        win = TransposedWindow(in_shape[2], in_shape[3], _pair(m.kernel_size), _pair(m.stride), _pair(m.dilation),
                               _pair(m.padding), tuple(out_shape[2:]))
        multiple = win.tile_multiple()
        tile = -(-self._tile(out_shape) // multiple) * multiple
        bias = m.bias.detach().clone() if m.bias is not None else None
        step = TransposedConvStep(node.name, self._spatial_ref(node.args[0]).name, out_shape[1:], tile,
                                  m.weight.detach().clone(), bias, win, m.groups)
        self._add(node, step)
        self.tail[step.name] = node.name

    def _fusable_conv(self, x: fx.Node) -> ConvStep | TransposedConvStep | None:
        """The conv step whose current output ``x`` is, if ``x`` has no other reader."""
        if not isinstance(x, fx.Node) or len(x.users) != 1:
            return None
        step = self.producer.get(self.canon.get(x.name))
        if isinstance(step, (ConvStep, TransposedConvStep)) and self.tail.get(step.name) == x.name:
            return step
        return None

    def _fold_batchnorm(self, node, bn: nn.BatchNorm2d) -> bool:
        step = self._fusable_conv(node.args[0])
        if step is None or step.last.epilogue or bn.training or bn.running_mean is None:
            return False
        step.fold_batchnorm(bn)
        self._alias(node, node.args[0])
        self.tail[step.name] = node.name
        return True

    def _pool(self, node, m) -> bool:
        kind = "max" if isinstance(m, nn.MaxPool2d) else "avg"
        if kind == "max" and m.return_indices or kind == "avg" and m.divisor_override:
            return False
        in_shape, out_shape = _shape(node.args[0]), _shape(node)
        ph, pw = _pair(m.padding)
        if kind == "avg" and m.ceil_mode:
            return False  # ceil-mode average pooling divides edge windows specially: run dense
        dilation = _pair(m.dilation) if kind == "max" else (1, 1)
        win = Window(in_shape[2], in_shape[3], _pair(m.kernel_size), _pair(m.stride or m.kernel_size),
                     dilation, (ph, ph, pw, pw), m.ceil_mode)
        if win.out_size != tuple(out_shape[2:]):
            return False
        cip = getattr(m, "count_include_pad", True)
        self._add(node, PoolStep(node.name, self._spatial_ref(node.args[0]).name, out_shape[1:],
                                 self._tile(out_shape), kind, win, cip))
        return True

    def _resample(self, node, mode, align_corners, scale_factor) -> bool:
        if mode not in ("nearest", "nearest-exact", "bilinear"):
            return False
        in_shape, out_shape = _shape(node.args[0]), _shape(node)
        scales = (None, None)
        if scale_factor is not None and not (mode == "bilinear" and align_corners):
            sf = _pair(scale_factor) if not isinstance(scale_factor, float) else (scale_factor, scale_factor)
            scales = tuple(1.0 / s for s in sf)
        self._add(node, ResampleStep(node.name, self._spatial_ref(node.args[0]).name, out_shape[1:],
                                     self._tile(out_shape), tuple(in_shape[2:]), mode,
                                     bool(align_corners), scales))
        return True

    def _concat(self, node) -> bool:
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        out_shape = _shape(node)
        if out_shape is None or len(out_shape) != 4 or dim not in (1, -3):
            return False
        refs = [self._spatial_ref(t) for t in tensors]
        if not all(refs) or any(_shape(t)[2:] != out_shape[2:] for t in tensors):
            return False
        step = ConcatStep(node.name, [r.name for r in refs], out_shape[1:], self._tile(out_shape))
        self._add(node, step)
        return True

    def _pointwise(self, node, module, target) -> Pointwise | None:
        """The node as an elementwise op over its arguments, or None if it is not one."""
        if module is not None:
            if not isinstance(module, ACTIVATION_MODULES + (nn.BatchNorm2d,)):
                return None
            if isinstance(module, nn.BatchNorm2d):
                if module.training or module.running_mean is None:
                    return None
                scale = module.weight.detach() / torch.sqrt(module.running_var + module.eps)
                shift = module.bias.detach() - module.running_mean * scale
                return Pointwise(torch.addcmul, [shift.view(1, -1, 1, 1), self._arg(node.args[0]),
                                                 scale.view(1, -1, 1, 1)], {})
            if getattr(module, "inplace", False):  # never modify a cache in place
                module = copy.copy(module)
                module.inplace = False
            if any(p.requires_grad for p in module.parameters()):  # PReLU: a constant of the plan, and
                module = copy.deepcopy(module).requires_grad_(False)  # exportable as one
            return Pointwise(module, [self._arg(node.args[0])], {})
        if (node.op == "call_function" and target in CHANNEL_SOFTMAX or
                node.op == "call_method" and target in ("softmax", "log_softmax")):
            shape = _shape(node)
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
            if shape is None or len(shape) != 4 or dim not in (1, -3) or set(node.kwargs) - {"dim"}:
                return None
            fn = getattr(torch, target) if isinstance(target, str) else target
            # dim 1 is the channel axis of NCHW values and of (cells, C) rows alike.
            return Pointwise(lambda v, _f=fn: _f(v, dim=1), [self._arg(node.args[0])], {})
        if node.op == "call_method" and target in ELEMENTWISE_METHODS:
            return Pointwise(lambda s, *a, _m=target, **k: getattr(s, _m)(*a, **k),
                             [self._arg(a) for a in node.args], dict(node.kwargs))
        if node.op == "call_function" and target in ELEMENTWISE_FUNCTIONS:
            kwargs = {k: v for k, v in node.kwargs.items() if k != "inplace"}
            if any(isinstance(v, fx.Node) for v in kwargs.values()):
                return None
            return Pointwise(target, [self._arg(a) for a in node.args], kwargs)
        return None

    def _elementwise(self, node, op: Pointwise, shape) -> bool:
        if shape is None or len(shape) != 4 or shape[0] != 1:
            return False
        if any(isinstance(a, torch.Tensor) and not _per_channel(tuple(a.shape), shape) for a in op.args):
            return False
        spatial = []  # (fx node, Ref) of full-size feature-map operands
        for i, a in enumerate(op.args):
            if not isinstance(a, Ref):
                continue
            node_a = next(n for n in node.all_input_nodes if self.canon[n.name] == a.name)
            if _shape(node_a) == shape and self._spatial_ref(node_a) is not None:
                spatial.append((node_a, a))
            elif _per_channel(_shape(node_a), shape):
                a.broadcast = True
            else:
                return False  # other broadcasting: run dense
        if not spatial:
            return False
        # Fuse into the producing conv when nothing else reads its output and the other
        # operands are computed before it.
        for node_a, ref in spatial:
            conv = self._fusable_conv(node_a)
            if conv is None or [r.name for _, r in spatial].count(ref.name) != 1:
                continue
            others = [self.producer[r] for r in op.refs() if r != ref.name]
            if all(self.steps.index(o) < self.steps.index(conv) for o in others):
                conv.last.epilogue.append(_in_place(op, ref.name))
                self._alias(node, node_a)
                self.tail[conv.name] = node.name
                return True
        self._add(node, PointwiseStep(node.name, shape[1:], self._tile(shape), op))
        return True


_HAS_INPLACE = {F.relu, F.relu6, F.hardswish, F.hardsigmoid, F.silu, F.leaky_relu, F.elu, F.hardtanh, F.mish}


def _in_place(op: Pointwise, operand: str) -> Pointwise:
    """A fused unary activation may overwrite the conv's fresh output instead of allocating."""
    if op.refs() != [operand]:
        return op
    if isinstance(op.fn, nn.Module) and hasattr(op.fn, "inplace"):
        fn = copy.copy(op.fn)
        fn.inplace = True
        return Pointwise(fn, op.args, op.kwargs)
    if op.fn in _HAS_INPLACE:
        return Pointwise(op.fn, op.args, {**op.kwargs, "inplace": True})
    return op


def _has_node(structure) -> bool:
    found = []
    fx.node.map_arg(structure, lambda n: found.append(n) or n)
    return bool(found)


def _per_channel(arg_shape, out_shape) -> bool:
    """True for operands that broadcast per channel over (1, C, H, W): scalars, (1, C, 1, 1), (C, 1, 1)."""
    if arg_shape is None:
        return False
    numel = 1
    for s in arg_shape:
        numel *= s
    return numel == 1 or tuple(arg_shape[-3:]) == (out_shape[1], 1, 1)


def _fetch_attr(gm: fx.GraphModule, target: str):
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj
