"""TFLite models in, TensorFlow-free: a ``.tflite`` flatbuffer rebuilt as a torch.fx module of the
ops passrt plans, as :mod:`passrt.models.onnx_import` does for ONNX.

The file is read with the ``tflite`` package (generated flatbuffer accessors, no TensorFlow).
TFLite is NHWC; here every 4-D activation is NCHW (what the planner and kernels take), weights are
transposed once (OHWI -> OIHW; depthwise 1HW(C*m) -> (C*m)1HW), axes of channel-wise ops are
mapped, and 4-D graph outputs are given back NHWC, as the file gives them. fp16 weights
(``DEQUANTIZE`` of constants) are folded to float32, sparse ones (``DENSIFY``) made dense first. Ops with no mapping are named, all of them,
in one error line. Checked against LiteRT (``ai-edge-litert``) on a real frame
(tests/models/test_blazepose.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from passrt.errors import PassrtError
from passrt.nn import Conv2dSame

# TFLite's ActivationFunctionType
_FUSED = {0: None, 1: F.relu, 3: F.relu6, 4: torch.tanh}


def _nhwc(x):
    return torch.permute(x, (0, 2, 3, 1))


def _reshape_nhwc(x, shape):
    """TFLite Reshape of an NCHW-held 4-D value: the element order is NHWC's."""
    return torch.reshape(torch.permute(x, (0, 2, 3, 1)), shape)


DENSE_HELPERS = (_nhwc, _reshape_nhwc)


class _Unsupported(Exception):
    pass


class _Builder:
    def __init__(self, data: bytes, path: str):
        import tflite

        self.tfl, self.path = tflite, path
        self.model = tflite.Model.GetRootAsModel(data, 0)
        if self.model.SubgraphsLength() != 1:
            raise PassrtError(f"{path}: passrt imports TFLite models with one subgraph")
        self.g = self.model.Subgraphs(0)
        self.names = {v: k for k, v in tflite.BuiltinOperator.__dict__.items() if not k.startswith("_")}
        self.root = nn.Module()
        self.graph = fx.Graph()
        self.values: dict[int, object] = {}  # tensor index -> fx.Node (4-D: NCHW) or constant (numpy, file layout)
        self.n_const = 0

    # ---- tensors ------------------------------------------------------------------------
    def tensor(self, i: int):
        return self.g.Tensors(i)

    def constant(self, i: int):
        """The tensor's data from its buffer (file layout), or None when it is computed."""
        t = self.tensor(i)
        data = self.model.Buffers(t.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data.size == 0:
            return None
        dtype = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}.get(t.Type())
        if dtype is None:
            raise _Unsupported(f"tensor type {t.Type()}")
        return data.view(dtype).reshape(t.ShapeAsNumpy().tolist() if t.ShapeLength() else ())

    def value(self, i: int):
        if i not in self.values:
            c = self.constant(i)
            if c is None:
                raise _Unsupported(f"tensor '{self.tensor(i).Name().decode()}' has no value")
            self.values[i] = c
        return self.values[i]

    def buffer(self, array) -> fx.Node:
        name = f"const_{self.n_const}"
        self.n_const += 1
        self.root.register_buffer(name, torch.from_numpy(np.ascontiguousarray(array, np.float32)))
        return self.graph.get_attr(name)

    def module(self, m: nn.Module, x, label: str):
        name = "".join(c if c.isalnum() else "_" for c in label).strip("_") or "layer"
        name = "n_" + name if name[0].isdigit() else name
        base, k = name, 1
        while hasattr(self.root, name):
            name, k = f"{base}_{k}", k + 1
        self.root.add_module(name, m)
        return self.graph.call_module(name, (x,))

    def options(self, op, cls_name: str):
        table = op.BuiltinOptions()
        opts = getattr(self.tfl, cls_name)()
        opts.Init(table.Bytes, table.Pos)
        return opts

    def fused(self, y, code: int):
        if code not in _FUSED:
            raise _Unsupported(f"fused activation {code}")
        fn = _FUSED[code]
        return self.graph.call_function(fn, (y,)) if fn is not None else y

    # ---- the graph ----------------------------------------------------------------------
    def build(self, keep=None):
        g = self.g
        if g.InputsLength() != 1:
            raise PassrtError(f"{self.path}: passrt runs models with one image input; this one has {g.InputsLength()}")
        inp = self.tensor(g.Inputs(0))
        shape = inp.ShapeAsNumpy().tolist()
        if len(shape) != 4:
            raise PassrtError(f"{self.path}: the input must be an NHWC image, it is {shape}")
        self.values[g.Inputs(0)] = self.graph.placeholder("image")
        unsupported: dict[str, str] = {}
        for k in range(g.OperatorsLength()):
            op = g.Operators(k)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            name = self.names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
            try:
                self.node(name, op)
            except _Unsupported as e:
                unsupported.setdefault(name, str(e))
            except KeyError:  # an input of an op that could not be imported
                pass
        if unsupported:
            detail = "; ".join(f"{n} ({why})" if why else n for n, why in unsupported.items())
            raise PassrtError(f"{self.path}: TFLite ops passrt cannot import: {detail}")
        outputs = []
        for k in range(g.OutputsLength()) if keep is None else keep:
            v = self.values[g.Outputs(k)]
            is_map = isinstance(v, fx.Node) and len(self.tensor(g.Outputs(k)).ShapeAsNumpy()) == 4
            outputs.append(self.graph.call_function(_nhwc, (v,)) if is_map else v)
        self.graph.output(tuple(outputs))
        gm = fx.GraphModule(self.root, self.graph)
        if keep is not None:  # drop the ops only the outputs left out needed
            gm.graph.eliminate_dead_code()
            gm.delete_all_unused_submodules()
            gm.recompile()
        gm.passrt_dense_ops = DENSE_HELPERS
        return gm.eval(), (shape[1], shape[2])

    def node(self, name: str, op):
        ins = [op.Inputs(j) for j in range(op.InputsLength())]
        out = op.Outputs(0)
        label = self.tensor(out).Name().decode()
        if name == "DENSIFY":
            self.values[out] = self.densified(ins[0])
        elif name == "DEQUANTIZE":
            c = self.values[ins[0]] if isinstance(self.values.get(ins[0]), np.ndarray) else self.constant(ins[0])
            if c is None:
                raise _Unsupported("of computed values")
            self.values[out] = c.astype(np.float32)
        elif name == "CONV_2D" or name == "DEPTHWISE_CONV_2D":
            depthwise = name == "DEPTHWISE_CONV_2D"
            o = self.options(op, "DepthwiseConv2DOptions" if depthwise else "Conv2DOptions")
            w = np.asarray(self.value(ins[1]), np.float32)
            b = np.asarray(self.value(ins[2]), np.float32) if len(ins) > 2 and ins[2] >= 0 else None
            x = self.values[ins[0]]
            if depthwise:  # (1, kh, kw, C * m) -> (C * m, 1, kh, kw)
                c_in = self.tensor(ins[0]).ShapeAsNumpy()[3]
                weight, groups = w.transpose(3, 0, 1, 2), int(c_in)
            else:  # (O, kh, kw, I) -> (O, I, kh, kw)
                weight, groups = w.transpose(0, 3, 1, 2), 1
            kw = dict(in_channels=weight.shape[1] * groups, out_channels=weight.shape[0],
                      kernel_size=tuple(weight.shape[2:]), stride=(o.StrideH(), o.StrideW()),
                      dilation=(o.DilationHFactor(), o.DilationWFactor()), groups=groups, bias=b is not None)
            m = Conv2dSame(**kw) if o.Padding() == self.tfl.Padding.SAME else nn.Conv2d(padding=0, **kw)
            m.weight.data.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
            if b is not None:
                m.bias.data.copy_(torch.from_numpy(b))
            self.values[out] = self.fused(self.module(m, x, label), o.FusedActivationFunction())
        elif name in ("ADD", "MUL"):
            o = self.options(op, "AddOptions" if name == "ADD" else "MulOptions")
            a, b = (self.operand(i) for i in ins[:2])
            y = self.graph.call_function(torch.add if name == "ADD" else torch.mul, (a, b))
            self.values[out] = self.fused(y, o.FusedActivationFunction())
        elif name == "LOGISTIC":
            self.values[out] = self.graph.call_function(torch.sigmoid, (self.values[ins[0]],))
        elif name in ("RELU", "RELU6"):
            self.values[out] = self.graph.call_function(F.relu if name == "RELU" else F.relu6, (self.values[ins[0]],))
        elif name == "PAD":
            pads = np.asarray(self.value(ins[1])).reshape(4, 2).tolist()  # NHWC (before, after)
            if pads[0] != [0, 0]:
                raise _Unsupported("padding the batch")
            # F.pad lists the last NCHW axis first: W, H, C
            torch_pads = (*pads[2], *pads[1], *pads[3])
            self.values[out] = self.graph.call_function(F.pad, (self.values[ins[0]], torch_pads))
        elif name == "RESIZE_BILINEAR":
            o = self.options(op, "ResizeBilinearOptions")
            size = np.asarray(self.value(ins[1])).tolist()
            if not o.HalfPixelCenters() and not o.AlignCorners():
                raise _Unsupported("legacy coordinates (neither half_pixel_centers nor align_corners)")
            self.values[out] = self.graph.call_function(
                F.interpolate, (self.values[ins[0]],),
                {"size": tuple(size), "mode": "bilinear", "align_corners": bool(o.AlignCorners())})
        elif name == "MAX_POOL_2D":
            o = self.options(op, "Pool2DOptions")
            k, s = (o.FilterHeight(), o.FilterWidth()), (o.StrideH(), o.StrideW())
            x = self.values[ins[0]]
            if o.Padding() == self.tfl.Padding.SAME and k != s:
                raise _Unsupported("SAME pooling with a kernel other than its stride")
            # kernel == stride: SAME pads only a last partial window, which ceil mode computes alike
            m = nn.MaxPool2d(k, s, ceil_mode=o.Padding() == self.tfl.Padding.SAME)
            self.values[out] = self.fused(self.module(m, x, label), o.FusedActivationFunction())
        elif name == "CONCATENATION":
            o = self.options(op, "ConcatenationOptions")
            rank = len(self.tensor(out).ShapeAsNumpy())
            axis = o.Axis() % rank
            if rank == 4:
                axis = {0: 0, 1: 2, 2: 3, 3: 1}[axis]  # NHWC axis -> the NCHW value's
            parts = [self.operand(i) for i in ins]
            if not all(isinstance(v, fx.Node) for v in parts):
                raise _Unsupported("of constants")
            y = self.graph.call_function(torch.cat, (parts,), {"dim": axis})
            self.values[out] = self.fused(y, o.FusedActivationFunction())
        elif name == "DEPTH_TO_SPACE":
            bs = self.options(op, "DepthToSpaceOptions").BlockSize()
            c_in = int(self.tensor(ins[0]).ShapeAsNumpy()[3])
            c = c_in // (bs * bs)
            # TFLite orders the input channels (dy, dx, c) (DCR); pixel_shuffle takes (c, dy, dx). A 1x1
            # conv with a permutation matrix reorders them exactly (each output is 1 x one input) and
            # keeps the step sparse, where a reshape/permute would run dense.
            perm = nn.Conv2d(c_in, c_in, 1, bias=False)
            w = torch.zeros(c_in, c_in, 1, 1)
            for ch in range(c):
                for k in range(bs * bs):
                    w[ch * bs * bs + k, k * c + ch] = 1.0
            perm.weight.data.copy_(w)
            y = self.module(perm, self.values[ins[0]], label + "_dcr")
            self.values[out] = self.graph.call_function(F.pixel_shuffle, (y, bs))
        elif name == "RESHAPE":
            shape = self.tensor(out).ShapeAsNumpy().tolist()
            x = self.values[ins[0]]
            if len(self.tensor(ins[0]).ShapeAsNumpy()) == 4:
                self.values[out] = self.graph.call_function(_reshape_nhwc, (x, tuple(shape)))
            else:
                self.values[out] = self.graph.call_function(torch.reshape, (x, tuple(shape)))
        else:
            raise _Unsupported("")

    def densified(self, i: int) -> np.ndarray:
        """A sparse constant (TFLite's SparsityParameters: dimensions in ``traversal_order``, each DENSE
        or SPARSE_CSR, block dimensions after the tensor's own) as a dense array, as LiteRT's
        FormatConverter builds it: level by level, the indices of every stored element."""
        t = self.tensor(i)
        sp = t.Sparsity()
        if sp is None:
            raise _Unsupported("of a tensor without sparsity parameters")
        shape = t.ShapeAsNumpy().tolist()
        rank = len(shape)
        order = sp.TraversalOrderAsNumpy().tolist()
        block_map = sp.BlockMapAsNumpy().tolist() if sp.BlockMapLength() else []
        data = self.model.Buffers(t.Buffer()).DataAsNumpy()
        dtype = {0: np.float32, 1: np.float16, 9: np.int8}.get(t.Type())
        if dtype is None:
            raise _Unsupported(f"tensor type {t.Type()}")
        values = data.view(dtype)
        position = np.zeros(1, np.int64)  # per stored element so far: its position at this level
        coords: list[np.ndarray] = []  # per level: each element's coordinate along that expanded dimension
        for level in range(len(order)):
            dm = sp.DimMetadata(level)
            if dm.Format() == 0:  # DENSE
                n = dm.DenseSize()
                coords = [np.repeat(c, n) for c in coords] + [np.tile(np.arange(n), len(position))]
                position = (position[:, None] * n + np.arange(n)[None, :]).reshape(-1)
            else:  # SPARSE_CSR: segments[p]..segments[p+1] index the stored coordinates of position p
                segments, indices = self._index_vector(dm.ArraySegments(), dm.ArraySegmentsType()), \
                    self._index_vector(dm.ArrayIndices(), dm.ArrayIndicesType())
                starts, ends = segments[position], segments[position + 1]
                counts = ends - starts
                parent = np.repeat(np.arange(len(position)), counts)
                position = np.repeat(starts, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
                coords = [c[parent] for c in coords] + [indices[position]]
        dense = np.zeros(shape, dtype)
        full = [np.zeros(len(position), np.int64) for _ in range(rank)]
        block_size = {}
        for level, dim in enumerate(order):
            if dim >= rank:
                block_size[block_map[dim - rank]] = sp.DimMetadata(level).DenseSize()
        for level, dim in enumerate(order):
            if dim < rank:
                full[dim] = full[dim] + coords[level] * block_size.get(dim, 1)
            else:
                full[block_map[dim - rank]] = full[block_map[dim - rank]] + coords[level]
        dense[tuple(full)] = values[position]
        return dense

    def _index_vector(self, table, kind: int) -> np.ndarray:
        cls = {1: self.tfl.Int32Vector, 2: self.tfl.Uint16Vector, 3: self.tfl.Uint8Vector}.get(kind)
        if cls is None:
            raise _Unsupported(f"sparse index vector type {kind}")
        v = cls()
        v.Init(table.Bytes, table.Pos)
        return v.ValuesAsNumpy().astype(np.int64)

    def operand(self, i: int):
        """An elementwise operand: a computed value, or a constant laid out for NCHW maps."""
        v = self.value(i) if i not in self.values else self.values[i]
        if isinstance(v, fx.Node):
            return v
        c = np.asarray(v, np.float32)
        if c.size == 1:
            return float(c.reshape(()))
        if c.ndim == 4:
            c = c.transpose(0, 3, 1, 2)
        elif c.ndim == 1:
            c = c.reshape(-1, 1, 1)  # per channel (the last NHWC axis)
        return self.buffer(c)


def load_tflite(path: str | Path, outputs=None):
    """``(module, (H, W))``: the model as a module taking (1, C, H, W) frames and returning the file's
    outputs as a tuple (4-D ones NHWC, as the file has them); (H, W) the input size the file fixes.
    ``outputs``: indices of the file's outputs to return, in that order (None: all); the ops that only
    the others need are left out, so no engine computes what nobody reads."""
    path = str(path)
    if not Path(path).is_file():
        raise PassrtError(f"no such TFLite file: {path}")
    try:
        import tflite  # noqa: F401
    except ImportError:
        raise PassrtError("reading .tflite files needs the 'tflite' package: pip install 'passrt[tflite]'") from None
    builder = _Builder(Path(path).read_bytes(), path)
    if outputs is not None and not all(0 <= k < builder.g.OutputsLength() for k in outputs):
        raise PassrtError(f"{path}: has {builder.g.OutputsLength()} outputs, asked for {list(outputs)}")
    return builder.build(outputs)
