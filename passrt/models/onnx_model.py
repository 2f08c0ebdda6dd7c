"""ONNX models as :class:`~passrt.models.ModelSpec`: any ``.onnx`` file, and two real ones from PyPI.

A bare ONNX file has no task head passrt knows: its spec has ``postprocess=None``, and ``passrt
run``/``bench`` report its raw outputs against the dense model (max/mean |sparse - dense| per
output). Its frames are RGB in [0, 1]; an input of dynamic size gets the frame as it is, padded
at the bottom/right to a multiple of 32 (what FPN-style CNNs need to concatenate their levels),
a fixed-size input gets the frame resized.

Registry models (files from :mod:`passrt.assets`, nobody wrote them for passrt):

- ``ppocr-det``: PaddleOCR's PP-OCRv4 text detector (DBNet, MobileNetV3 with squeeze-excite,
  FPN with nearest upsampling, a head of two transposed convs), as RapidOCR ships it; its
  preprocessing (BGR / 255, ImageNet mean and std); output: the text probability map.
- ``mtcnn-pnet``: MTCNN's proposal net (PReLU, 'SAME' max pooling, a face/non-face softmax), a
  Keras export with an NHWC input; its preprocessing ((RGB - 127.5) / 128).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from passrt.models import ModelSpec
from passrt.models.onnx_import import load_onnx

GENERIC_MULTIPLE = 32


class Preprocess:
    """BGR uint8 (H, W, 3) -> (1, 3, H', W') float32: channel order, ``(x - mean) / std`` per
    channel on [0, 255] values, then padding to ``multiple`` or resizing to ``size``."""

    def __init__(self, rgb: bool, mean, std, multiple: int = 1, size=None):
        self.rgb, self.multiple, self.size = rgb, multiple, size
        self.mean = np.asarray(mean, np.float32).reshape(1, 1, 3)
        self.std = np.asarray(std, np.float32).reshape(1, 1, 3)

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        import cv2

        if self.size is not None and image.shape[:2] != tuple(self.size):
            image = cv2.resize(image, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
        if self.rgb:
            image = image[:, :, ::-1]
        x = (image.astype(np.float32) - self.mean) / self.std
        h, w = x.shape[:2]
        m = self.multiple
        if m > 1 and (h % m or w % m):
            x = np.pad(x, ((0, -h % m), (0, -w % m), (0, 0)))
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]


def from_file(path: str | Path, name: str | None = None, preprocess: Preprocess | None = None,
              multiple: int | None = None) -> ModelSpec:
    module, info = load_onnx(path)
    fixed = info.input_hw if None not in info.input_hw else None
    if multiple is None:
        multiple = 1 if fixed else GENERIC_MULTIPLE
    if preprocess is None:
        preprocess = Preprocess(True, (0, 0, 0), (255, 255, 255), multiple, fixed)
    return ModelSpec(name or str(path), module, preprocess, None, input_multiple=multiple, onnx=info)


def ppocr_det() -> ModelSpec:
    from passrt import assets

    mean = [255 * m for m in (0.485, 0.456, 0.406)]
    std = [255 * s for s in (0.229, 0.224, 0.225)]
    return from_file(assets.fetch("ppocr-det"), "ppocr-det", Preprocess(False, mean, std, 32), 32)


def mtcnn_pnet() -> ModelSpec:
    from passrt import assets

    return from_file(assets.fetch("mtcnn-pnet"), "mtcnn-pnet", Preprocess(True, (127.5,) * 3, (128.0,) * 3), 1)
