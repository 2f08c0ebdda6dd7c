"""Models passrt ships a loader for, by name: ``spec = load_model("ssdlite-pedestrian")``.

Each entry is ``module`` (its ``model_spec()``) or ``module:function``; model-specific code lives
there. A path to an ``.onnx`` file is a model too (:mod:`passrt.models.onnx_model`): it runs
with no task head, and commands report its raw outputs against dense.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from passrt.errors import PassrtError

if TYPE_CHECKING:  # torch is imported by the model modules, not here: the CLI's --help lists MODELS
    import numpy as np
    import torch
    from torch import nn

    from passrt.models.postprocess import Detections, Keypoints

__all__ = ["MODELS", "ModelSpec", "load_model", "view_of"]


@dataclass
class ModelSpec:
    name: str
    module: nn.Module  # in eval mode
    preprocess: Callable[[np.ndarray], torch.Tensor]  # BGR uint8 (H, W, 3) -> (1, 3, H, W) float32, no resize
    # (outputs, image_hw, **kw) -> Detections in pixels; None: no task head (raw outputs only)
    postprocess: Optional[Callable[..., Detections | Keypoints]]
    input_multiple: int = 1  # input H and W must be multiples of this (1: any size)
    onnx: Any = None  # an imported ONNX model's OnnxInfo: ONNX Runtime's dense baseline runs that file
    task: str = "detection"  # what postprocess gives: "detection" (Detections) or "pose" (Keypoints)


MODELS: dict[str, str] = {  # name -> module[:function]
    "ssdlite-pedestrian": "passrt.models.ssdlite",
    "ppocr-det": "passrt.models.onnx_model:ppocr_det",
    "mtcnn-pnet": "passrt.models.onnx_model:mtcnn_pnet",
    "yolov3-tiny": "passrt.models.darknet",
    "blazepose": "passrt.models.blazepose:crop_spec",
    "blazepose-landmark": "passrt.models.blazepose",
}


def is_onnx_path(name: str) -> bool:
    return name.lower().endswith(".onnx")


ONNX_FILE = "passrt.models.onnx_model:from_file"  # what loads a path to an .onnx file


def view_of(x):
    """Where a preprocessed input sits in its frame (:class:`passrt.models.crop.View`), for models whose
    preprocess crops (pose on a person crop); None for inputs that are the whole frame."""
    return getattr(x, "passrt_view", None)


def load_model(name: str) -> ModelSpec:
    # The model modules import ModelSpec from here, so they are found by name, as MODELS lists them.
    if is_onnx_path(name):
        return _loader(ONNX_FILE)(name)
    if name not in MODELS:
        raise PassrtError(f"unknown model '{name}'; known models: {', '.join(MODELS)}, or a path to an .onnx file")
    return _loader(MODELS[name])()


def _loader(target: str):
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function or "model_spec")
