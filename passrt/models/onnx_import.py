"""ONNX models in: an ONNX graph rebuilt as a torch.fx GraphModule of the ops passrt plans.

Why not ``onnx2torch``: it imports torchvision at import time (for its NMS and RoIAlign
converters), and the PyPI torchvision wheel does not load with the CPU torch passrt pins; its
graphs are also made of its own wrapper modules (``OnnxResize``, ``OnnxBinaryMathOperation``,
...) with Python control flow inside, which torch.fx cannot retrace (the ``TraceError:
symbolic ...`` users met) and the planner would not know anyway. Here every ONNX node becomes the
PyTorch op passrt already plans (``nn.Conv2d``, ``nn.ConvTranspose2d``, ``F.interpolate``,
``F.pad``, slicing, ``torch.cat`` ...), whose semantics are checked against ONNX Runtime node by
node (tests/models/test_onnx_import.py) and model by model. Ops with no such mapping are named,
all of them, in one error line.

Constant subgraphs (shape arithmetic on constants, ``Constant`` nodes) are folded at import.
A graph whose image input is NHWC followed by ``Transpose(0, 3, 1, 2)`` (Keras/TF exports) is
imported with that transpose absorbed: the module takes NCHW frames (``input_layout`` says what
the ONNX file takes).
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from passrt.errors import PassrtError
from passrt.nn import Conv2dSame


@dataclass
class OnnxInfo:
    path: str
    input_name: str
    input_layout: str  # "nchw" or "nhwc": what the ONNX file takes
    input_hw: tuple  # (H, W) fixed by the file, or (None, None)
    output_names: list


def _reshape(x, shape):
    """ONNX Reshape: 0 copies the input's dimension (allowzero=0)."""
    shape = shape.tolist() if isinstance(shape, torch.Tensor) else shape
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return torch.reshape(x, shape)


def _flatten(x, axis: int):
    axis = axis % x.dim() if x.dim() else 0
    outer = 1
    for s in x.shape[:axis]:
        outer *= s
    return torch.reshape(x, (outer, -1))


def _gemm(a, b, c, alpha: float, beta: float, trans_a: int, trans_b: int):
    a = a.t() if trans_a else a
    b = b.t() if trans_b else b
    y = alpha * (a @ b)
    return y + beta * c if c is not None else y


def _shape(x):
    return torch.tensor(x.shape, dtype=torch.int64)


def _softmax_flat(x, axis: int, log: bool):
    """Softmax before opset 13: over all dimensions from ``axis`` on, flattened."""
    shape = x.shape
    y = torch.reshape(x, (*shape[:axis], -1))
    y = F.log_softmax(y, dim=-1) if log else F.softmax(y, dim=-1)
    return torch.reshape(y, shape)


def _gather(x, index, axis: int):
    axis = axis % x.dim()
    return torch.index_select(x, axis, index.reshape(-1).long()).reshape(
        (*x.shape[:axis], *index.shape, *x.shape[axis + 1:]))


def _range(start, limit, delta):
    # Constant scalars arrive as Python floats (see _Builder.arg): float32, as ONNX had them.
    dtype = next((v.dtype for v in (start, limit, delta) if isinstance(v, torch.Tensor)), torch.float32)
    return torch.arange(_item(start), _item(limit), _item(delta), dtype=dtype)


def _constant_of_shape(shape, value):
    dtype = value.dtype if isinstance(value, torch.Tensor) else torch.float32
    return torch.full(shape.tolist(), _item(value), dtype=dtype)


def _expand(x, shape):
    """ONNX Expand broadcasts both ways (a 1 in ``shape`` keeps the input's size)."""
    return torch.broadcast_to(x, torch.broadcast_shapes(tuple(x.shape), tuple(shape.tolist())))


def _item(v):
    return v.item() if isinstance(v, torch.Tensor) else v


def _cast(x, dtype):
    return x.to(dtype)


def _unsqueeze(x, axes):
    for a in sorted(a % (x.dim() + len(axes)) for a in axes):
        x = torch.unsqueeze(x, a)
    return x


def _squeeze(x, axes):
    if axes is None:
        return torch.squeeze(x)
    for a in sorted((a % x.dim() for a in axes), reverse=True):
        x = torch.squeeze(x, a)
    return x


# Run densely by the planner (shape arithmetic and heads): SparseModel reads this attribute.
DENSE_HELPERS = (_reshape, _flatten, _gemm, _shape, _softmax_flat, _gather, _cast, _unsqueeze, _squeeze, _range,
                 _constant_of_shape, _expand)

_ELEMENTWISE = {"Add": operator.add, "Sub": operator.sub, "Mul": operator.mul, "Div": operator.truediv}
_UNARY = {"Relu": F.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh, "Neg": torch.neg, "Abs": torch.abs,
          "Exp": torch.exp, "Sqrt": torch.sqrt, "Log": torch.log, "Erf": torch.erf, "Reciprocal": torch.reciprocal,
          "HardSwish": F.hardswish, "Softplus": F.softplus, "Floor": torch.floor, "Ceil": torch.ceil}
# Every op type node() handles (some only with certain attributes; it says which when it refuses one).
KNOWN_OPS = set(_ELEMENTWISE) | set(_UNARY) | {
    "Constant", "Identity", "Dropout", "Max", "Min", "Pow", "LeakyRelu", "Elu", "HardSigmoid", "Clip", "PRelu",
    "Conv", "ConvTranspose", "BatchNormalization", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool",
    "Concat", "Resize", "Upsample", "Pad", "Slice", "Split", "DepthToSpace", "Softmax", "LogSoftmax", "Transpose",
    "Reshape", "Range", "ConstantOfShape", "Expand", "Flatten", "Gemm", "MatMul", "Shape", "Gather", "Cast",
    "Unsqueeze", "Squeeze", "ReduceMean"}
_DTYPES = {1: torch.float32, 6: torch.int32, 7: torch.int64, 9: torch.bool, 10: torch.float16, 11: torch.float64}


class _Builder:
    def __init__(self, model, path: str):
        import onnx
        from onnx import numpy_helper

        self.model, self.path = model, path
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.root = nn.Module()
        self.graph = fx.Graph()
        self.values: dict[str, Any] = {}  # ONNX value name -> fx.Node or a constant torch tensor
        self.n_buffers = 0
        self.current = None  # the ONNX node being imported
        for init in model.graph.initializer:
            self.values[init.name] = torch.from_numpy(np.array(numpy_helper.to_array(init)))
        self._onnx = onnx

    # ---- values ------------------------------------------------------------------------
    def get(self, name: str):
        return None if name == "" else self.values[name]

    def const(self, name: str):
        """A constant input as a Python list / number (shapes, axes, scales)."""
        v = self.get(name)
        if v is None:
            return None
        if isinstance(v, fx.Node):
            raise _Unsupported(f"input '{name}' computed at run time (only constants are supported there)")
        return v.tolist()

    def arg(self, v):
        """A value as an argument of a graph call: single numbers as Python scalars, other
        constant tensors as buffers (they follow the module's device and dtype)."""
        if isinstance(v, torch.Tensor):
            if v.numel() == 1 and v.dim() <= 1 and v.is_floating_point():
                return float(v.reshape(()))
            name = f"const_{self.n_buffers}"
            self.n_buffers += 1
            self.root.register_buffer(name, v.float() if v.is_floating_point() else v)
            return self.graph.get_attr(name)
        return v

    def call(self, fn, *args, **kwargs):
        """``fn(*args)``: folded now if every argument is a constant, else a graph node."""
        if not _has_node((args, kwargs)):
            with torch.no_grad():
                return fn(*args, **kwargs)
        args, kwargs = fx.node.map_aggregate((args, kwargs), self.arg)
        return self.graph.call_function(fn, tuple(args), dict(kwargs))

    def module(self, m: nn.Module, x):
        # Named after the ONNX node, so stats() and `passrt export` show the file's own layer names.
        base = re.sub(r"\W", "_", self.current or "layer").strip("_") or "layer"
        base = base if not base[0].isdigit() else "n_" + base
        name, i = base, 1
        while hasattr(self.root, name):
            name, i = f"{base}_{i}", i + 1
        self.root.add_module(name, m)
        return self.graph.call_module(name, (x,))

    # ---- the graph ----------------------------------------------------------------------
    def build(self) -> tuple[fx.GraphModule, OnnxInfo]:
        g = self.model.graph
        inits = {i.name for i in g.initializer}
        inputs = [i for i in g.input if i.name not in inits]
        if len(inputs) != 1:
            raise PassrtError(f"{self.path}: passrt runs models with one image input; this one has "
                              f"{len(inputs)} ({', '.join(i.name for i in inputs)})")
        inp = inputs[0]
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        if len(dims) != 4:
            raise PassrtError(f"{self.path}: the input '{inp.name}' must be an image (4 dimensions), it has {len(dims)}")
        users = [n for n in g.node if inp.name in n.input]
        layout = "nchw"
        if len(users) == 1 and users[0].op_type == "Transpose" and _attrs(users[0]).get("perm") == [0, 3, 1, 2]:
            layout = "nhwc"
        x = self.graph.placeholder("image")
        hw = tuple(dims[1:3]) if layout == "nhwc" else tuple(dims[2:4])
        self.values[inp.name] = x
        skip = {id(users[0])} if layout == "nhwc" else set()
        if layout == "nhwc":
            self.values[users[0].output[0]] = x
        unsupported: dict[str, str] = {}
        for node in g.node:
            if id(node) in skip:
                continue
            self.current = node.name or node.output[0]
            if any(self.values.get(i) is _MISSING for i in node.input):
                # After an unsupported op nothing can be computed; still name every op type never supported.
                if node.op_type not in KNOWN_OPS:
                    unsupported.setdefault(node.op_type, "")
                outs = [_MISSING] * len(node.output)
            else:
                try:
                    outs = self.node(node)
                except _Unsupported as e:
                    unsupported.setdefault(node.op_type, str(e))
                    outs = [_MISSING] * len(node.output)
            for name, v in zip(node.output, outs):
                self.values[name] = v
        if unsupported:
            detail = "; ".join(f"{op} ({why})" if why else op for op, why in unsupported.items())
            raise PassrtError(f"{self.path}: ONNX ops passrt cannot import: {detail}")
        outputs = [self.values[o.name] for o in g.output]
        self.graph.output(tuple(self.arg(o) for o in outputs))
        gm = fx.GraphModule(self.root, self.graph)
        gm.passrt_dense_ops = DENSE_HELPERS
        return gm, OnnxInfo(self.path, inp.name, layout, hw, [o.name for o in g.output])

    def node(self, node) -> list:
        op, a = node.op_type, _attrs(node)
        ins = [self.get(i) for i in node.input]
        if op == "Constant":
            if "value" not in a:
                raise _Unsupported("only 'value' constants")
            return [torch.from_numpy(np.array(self._onnx.numpy_helper.to_array(a["value"])))]
        if op in ("Identity", "Dropout"):
            return [ins[0]] + [None] * (len(node.output) - 1)
        if op in _ELEMENTWISE:
            return [self.call(_ELEMENTWISE[op], *ins)]
        if op in _UNARY:
            return [self.call(_UNARY[op], ins[0])]
        if op in ("Max", "Min") and len(ins) == 2:
            return [self.call(torch.maximum if op == "Max" else torch.minimum, *ins)]
        if op == "Pow":
            return [self.call(torch.pow, *ins)]
        if op == "LeakyRelu":
            return [self.call(F.leaky_relu, ins[0], a.get("alpha", 0.01))]
        if op == "Elu":
            return [self.call(F.elu, ins[0], a.get("alpha", 1.0))]
        if op == "HardSigmoid":  # as ONNX Runtime computes it: max(0, min(1, alpha * x + beta))
            y = self.call(operator.add, self.call(operator.mul, ins[0], a.get("alpha", 0.2)), a.get("beta", 0.5))
            return [self.call(torch.clamp, y, 0.0, 1.0)]
        if op == "Clip":
            lo, hi = (a.get("min"), a.get("max")) if self.opset < 11 else \
                (_scalar(self.const(node.input[1])) if len(node.input) > 1 else None,
                 _scalar(self.const(node.input[2])) if len(node.input) > 2 else None)
            if lo == 0 and hi == 6:
                return [self.call(F.relu6, ins[0])]
            if lo == 0 and hi is None:
                return [self.call(F.relu, ins[0])]
            return [self.call(torch.clamp, ins[0], lo, hi)]
        if op == "PRelu":
            slope = ins[1]
            if isinstance(slope, torch.Tensor) and isinstance(ins[0], fx.Node) and slope.dim() in (1, 3, 4) and \
                    all(s == 1 for s in slope.shape[-2:] if slope.dim() >= 3) and (slope.dim() == 1 and slope.numel() == 1
                                                                                    or slope.dim() >= 3):
                m = nn.PReLU(slope.numel())
                m.weight.data.copy_(slope.reshape(-1))
                return [self.module(m, ins[0])]
            raise _Unsupported("slopes that are not per channel")
        if op == "Conv":
            return [self.conv(node, a, ins)]
        if op == "ConvTranspose":
            return [self.conv_transpose(node, a, ins)]
        if op == "BatchNormalization":
            scale, bias, mean, var = ins[1:5]
            m = nn.BatchNorm2d(scale.numel(), eps=a.get("epsilon", 1e-5))
            for p, v in ((m.weight, scale), (m.bias, bias), (m.running_mean, mean), (m.running_var, var)):
                p.data.copy_(v.float())
            return [self.module(m.eval(), ins[0])]
        if op in ("MaxPool", "AveragePool"):
            return [self.pool(node, a, ins)]
        if op == "GlobalAveragePool":
            return [self.call(torch.mean, ins[0], dim=(2, 3), keepdim=True)]
        if op == "GlobalMaxPool":
            return [self.call(torch.amax, ins[0], dim=(2, 3), keepdim=True)]
        if op == "Concat":
            return [self.call(torch.cat, list(ins), a["axis"])]
        if op in ("Resize", "Upsample"):
            return [self.resize(node, a, ins)]
        if op == "Pad":
            return [self.pad(node, a, ins)]
        if op == "Slice":
            return [self.slice(node, a, ins)]
        if op == "Split":
            return self.split(node, a, ins)
        if op == "DepthToSpace" and a.get("mode", b"DCR") == b"CRD":
            return [self.call(F.pixel_shuffle, ins[0], a["blocksize"])]
        if op == "Softmax" or op == "LogSoftmax":
            axis = a.get("axis", -1 if self.opset >= 13 else 1)
            log = op == "LogSoftmax"
            rank = len(_shape_of(self.model, node.input[0]) or []) or None
            if self.opset >= 13 or axis == -1 or rank is not None and axis == rank - 1:
                return [self.call(F.log_softmax if log else F.softmax, ins[0], dim=axis)]
            return [self.call(_softmax_flat, ins[0], axis, log)]
        if op == "Transpose":
            return [self.call(torch.permute, ins[0], a["perm"])]
        if op == "Reshape":
            shape = ins[1] if isinstance(ins[1], fx.Node) else self.const(node.input[1])
            return [self.call(_reshape, ins[0], shape)]
        if op == "Range":
            return [self.call(_range, *ins)]
        if op == "ConstantOfShape":
            value = torch.from_numpy(np.array(self._onnx.numpy_helper.to_array(a["value"]))).reshape(()) \
                if "value" in a else torch.tensor(0.0)
            return [self.call(_constant_of_shape, ins[0], value)]
        if op == "Expand":
            return [self.call(_expand, ins[0], ins[1])]
        if op == "Flatten":
            return [self.call(_flatten, ins[0], a.get("axis", 1))]
        if op == "Gemm":
            c = ins[2] if len(ins) > 2 else None
            return [self.call(_gemm, ins[0], ins[1], c, a.get("alpha", 1.0), a.get("beta", 1.0),
                              a.get("transA", 0), a.get("transB", 0))]
        if op == "MatMul":
            return [self.call(torch.matmul, *ins)]
        if op == "Shape":
            return [self.call(_shape, ins[0])]
        if op == "Gather":
            return [self.call(_gather, ins[0], ins[1], a.get("axis", 0))]
        if op == "Cast":
            if a["to"] not in _DTYPES:
                raise _Unsupported(f"cast to ONNX type {a['to']}")
            return [self.call(_cast, ins[0], _DTYPES[a["to"]])]
        if op == "Unsqueeze":
            axes = a.get("axes") if self.opset < 13 else self.const(node.input[1])
            return [self.call(_unsqueeze, ins[0], axes)]
        if op == "Squeeze":
            axes = a.get("axes") if self.opset < 13 else (self.const(node.input[1]) if len(node.input) > 1 else None)
            return [self.call(_squeeze, ins[0], axes)]
        if op == "ReduceMean":
            axes = a.get("axes") if self.opset < 18 else (self.const(node.input[1]) if len(node.input) > 1 else None)
            dims = tuple(axes) if axes is not None else None
            return [self.call(torch.mean, ins[0], dim=dims, keepdim=bool(a.get("keepdims", 1)))]
        raise _Unsupported("")

    # ---- ops with geometry --------------------------------------------------------------
    def conv(self, node, a, ins):
        w, b = ins[1], ins[2] if len(ins) > 2 else None
        if not isinstance(w, torch.Tensor) or w.dim() != 4 or b is not None and not isinstance(b, torch.Tensor):
            raise _Unsupported("only 2-D convolutions with constant weights")
        k, s, d = tuple(w.shape[2:]), _pair(a.get("strides", 1)), _pair(a.get("dilations", 1))
        group = a.get("group", 1)
        auto = a.get("auto_pad", b"NOTSET")
        x = ins[0]
        kw = dict(in_channels=w.shape[1] * group, out_channels=w.shape[0], kernel_size=k, stride=s, dilation=d,
                  groups=group, bias=b is not None)
        if auto in (b"SAME_UPPER",):
            m = Conv2dSame(**kw)  # TF 'SAME': the odd pixel after
        elif auto == b"SAME_LOWER":
            raise _Unsupported("auto_pad SAME_LOWER")
        else:
            pads = a.get("pads", [0, 0, 0, 0]) if auto != b"VALID" else [0, 0, 0, 0]
            top, left, bottom, right = pads
            if (top, left) == (bottom, right):
                m = nn.Conv2d(padding=(top, left), **kw)
            else:  # asymmetric: an explicit pad (a sparse move step) before the conv
                x = self.call(F.pad, x, (left, right, top, bottom))
                m = nn.Conv2d(padding=0, **kw)
        m.weight.data.copy_(w.float())
        if b is not None:
            m.bias.data.copy_(b.float())
        return self.module(m, x)

    def conv_transpose(self, node, a, ins):
        w, b = ins[1], ins[2] if len(ins) > 2 else None
        if not isinstance(w, torch.Tensor) or w.dim() != 4:
            raise _Unsupported("only 2-D transposed convolutions with constant weights")
        if "output_shape" in a or a.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):
            raise _Unsupported("output_shape / auto_pad")
        group = a.get("group", 1)
        top, left, bottom, right = a.get("pads", [0, 0, 0, 0])
        if (top, left) != (bottom, right):
            raise _Unsupported("asymmetric pads")
        s, d = _pair(a.get("strides", 1)), _pair(a.get("dilations", 1))
        m = nn.ConvTranspose2d(w.shape[0], w.shape[1] * group, tuple(w.shape[2:]), s, (top, left),
                               _pair(a.get("output_padding", 0)), group, b is not None, d)
        m.weight.data.copy_(w.float())
        if b is not None:
            m.bias.data.copy_(b.float())
        return self.module(m, ins[0])

    def pool(self, node, a, ins):
        k = tuple(a["kernel_shape"])
        if len(k) != 2:
            raise _Unsupported("only 2-D pooling")
        s, d = _pair(a.get("strides", 1)), _pair(a.get("dilations", 1))
        ceil = bool(a.get("ceil_mode", 0))
        auto = a.get("auto_pad", b"NOTSET")
        x = ins[0]
        is_max = node.op_type == "MaxPool"
        if len(node.output) > 1 and node.output[1]:
            raise _Unsupported("indices output")
        if auto in (b"SAME_UPPER", b"SAME_LOWER"):
            shape = _shape_of(self.model, node.input[0])
            if shape is None or shape[2] is None:
                if not (k == s and d == (1, 1) and auto == b"SAME_UPPER"):
                    raise _Unsupported("auto_pad SAME on an input of unknown size")
                # kernel == stride: SAME_UPPER pads only the last partial window, as ceil_mode does
                pads, ceil = [0, 0, 0, 0], True
            else:
                pads = _same_pads(shape[2:], k, s, d, auto == b"SAME_UPPER")
        else:
            pads = a.get("pads", [0, 0, 0, 0]) if auto != b"VALID" else [0, 0, 0, 0]
        top, left, bottom, right = pads
        symmetric = (top, left) == (bottom, right) and top <= k[0] // 2 and left <= k[1] // 2
        if not symmetric:
            if not is_max and (a.get("count_include_pad", 0) == 0):
                raise _Unsupported("asymmetric pads in average pooling")
            x = self.call(F.pad, x, (left, right, top, bottom), "constant", float("-inf") if is_max else 0.0)
            top = left = 0
        if is_max:
            m = nn.MaxPool2d(k, s, (top, left), d, ceil_mode=ceil)
        else:
            if d != (1, 1):
                raise _Unsupported("dilated average pooling")
            m = nn.AvgPool2d(k, s, (top, left), ceil_mode=ceil, count_include_pad=bool(a.get("count_include_pad", 0)))
        return self.module(m, x)

    def resize(self, node, a, ins):
        mode = a.get("mode", b"nearest").decode()
        coord = a.get("coordinate_transformation_mode", b"half_pixel" if node.op_type == "Resize" else b"asymmetric").decode()
        nearest = a.get("nearest_mode", b"round_prefer_floor").decode()
        if node.op_type == "Upsample":
            scales, sizes = self.const(node.input[1]) if len(node.input) > 1 else a.get("scales"), None
            coord = "asymmetric"
            nearest = "floor"
        else:
            scales = self.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            sizes = self.get(node.input[3]) if len(node.input) > 3 and node.input[3] else None
            if scales == []:
                scales = None
            if a.get("antialias", 0) or a.get("axes") is not None or a.get("keep_aspect_ratio_policy", b"stretch") != b"stretch":
                raise _Unsupported("antialias / axes / keep_aspect_ratio_policy")
        if scales is not None and list(scales[:2]) != [1.0, 1.0]:
            raise _Unsupported("resizing batch or channels")
        kw = {}
        if mode == "nearest":
            integer = scales is not None and all(float(v).is_integer() and v >= 1 for v in scales[2:])
            if coord == "asymmetric" and nearest == "floor":
                torch_mode = "nearest"
            elif coord in ("half_pixel", "pytorch_half_pixel") and (nearest == "round_prefer_ceil" or integer):
                # floor((x + 0.5) / scale): ONNX's rounding of (x + 0.5) / scale - 0.5, which differs
                # from round_prefer_floor only on ties, and integer upscaling has none
                torch_mode = "nearest-exact"
            else:
                raise _Unsupported(f"nearest with {coord}/{nearest}")
        elif mode == "linear":
            torch_mode = "bilinear"
            if coord in ("half_pixel", "pytorch_half_pixel"):
                kw["align_corners"] = False
            elif coord == "align_corners":
                kw["align_corners"] = True
            else:
                raise _Unsupported(f"linear with {coord}")
        else:
            raise _Unsupported(f"mode {mode}")
        if sizes is not None:
            size = sizes.tolist()[2:] if isinstance(sizes, torch.Tensor) else self.call(_spatial, sizes)
            return self.call(F.interpolate, ins[0], size=size, mode=torch_mode, **kw)
        return self.call(F.interpolate, ins[0], scale_factor=tuple(float(v) for v in scales[2:]), mode=torch_mode, **kw)

    def pad(self, node, a, ins):
        mode = a.get("mode", b"constant").decode()
        if self.opset < 11:
            pads, value = a["pads"], a.get("value", 0.0)
        else:
            pads = self.const(node.input[1])
            value = _scalar(self.const(node.input[2])) if len(node.input) > 2 and node.input[2] else 0.0
            if len(node.input) > 3 and node.input[3]:
                raise _Unsupported("axes input")
        n = len(pads) // 2
        begin, end = pads[:n], pads[n:]
        if n != 4 or any(begin[:2]) or any(end[:2]):
            raise _Unsupported("padding other than height and width of an image")
        torch_mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate"}.get(mode)
        if torch_mode is None:
            raise _Unsupported(f"mode {mode}")
        extra = {"value": float(value)} if torch_mode == "constant" else {}
        return self.call(F.pad, ins[0], (begin[3], end[3], begin[2], end[2]), torch_mode, **extra)

    def slice(self, node, a, ins):
        if self.opset < 10:
            starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
        else:
            starts, ends = self.const(node.input[1]), self.const(node.input[2])
            axes = self.const(node.input[3]) if len(node.input) > 3 and node.input[3] else None
            steps = self.const(node.input[4]) if len(node.input) > 4 and node.input[4] else None
        axes = axes if axes is not None else list(range(len(starts)))
        steps = steps if steps is not None else [1] * len(starts)
        rank = len(_shape_of(self.model, node.input[0]) or []) or (ins[0].dim() if isinstance(ins[0], torch.Tensor) else 4)
        index = [slice(None)] * rank
        big = 2 ** 62
        for st, en, ax, sp in zip(starts, ends, axes, steps):
            if sp < 0:
                raise _Unsupported("negative steps")
            index[ax % rank] = slice(st, None if en >= big else en, sp)
        return self.call(operator.getitem, ins[0], tuple(index))

    def split(self, node, a, ins):
        axis = a.get("axis", 0)
        sizes = a.get("split") if self.opset < 13 else (self.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None)
        n = len(node.output)
        if sizes is None:
            shape = _shape_of(self.model, node.input[0])
            if shape is None or shape[axis] is None:
                raise _Unsupported("equal split of a dimension of unknown size")
            sizes = [shape[axis] // n] * n
        parts = self.call(torch.split, ins[0], list(sizes), axis)
        return [self.call(operator.getitem, parts, i) for i in range(n)]


class _Unsupported(Exception):
    pass


_MISSING = object()  # the value of an op that could not be imported


def _spatial(sizes):
    return [int(v) for v in sizes.tolist()[2:]]


def _has_node(structure) -> bool:
    found = []
    fx.node.map_aggregate(structure, lambda a: found.append(a) if isinstance(a, fx.Node) else None)
    return bool(found)


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _scalar(v):
    if v is None:
        return None
    while isinstance(v, list):
        v = v[0] if v else None
    return v


def _same_pads(hw, k, s, d, upper: bool):
    pads = []
    for n, kk, ss, dd in zip(hw, k, s, d):
        out = -(-n // ss)
        total = max((out - 1) * ss + (kk - 1) * dd + 1 - n, 0)
        small, big = total // 2, total - total // 2
        pads.append((small, big) if upper else (big, small))
    return [pads[0][0], pads[1][0], pads[0][1], pads[1][1]]


_SHAPES: dict = {}


def _shape_of(model, name: str):
    """The static shape ONNX shape inference gives a value (None where unknown)."""
    key = id(model)
    if key not in _SHAPES:
        import onnx

        try:
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception:  # noqa: BLE001 - inference is a help here, never a requirement
            inferred = model
        table = {}
        for v in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
            dims = v.type.tensor_type.shape.dim
            table[v.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
        _SHAPES.clear()
        _SHAPES[key] = table
    return _SHAPES[key].get(name)


def load_onnx(path: str | Path) -> tuple[fx.GraphModule, OnnxInfo]:
    """``(module, info)`` for an ONNX file: ``module`` takes (1, C, H, W) frames and returns the
    graph's outputs as a tuple, in the file's order."""
    import onnx

    path = str(path)
    if not Path(path).is_file():
        raise PassrtError(f"no such ONNX file: {path}")
    try:
        model = onnx.load(path)
    except Exception as e:  # noqa: BLE001 - protobuf raises several types for a file that is not ONNX
        raise PassrtError(f"cannot read {path} as an ONNX model ({type(e).__name__}: {e})") from None
    gm, info = _Builder(model, path).build()
    return gm.eval(), info
