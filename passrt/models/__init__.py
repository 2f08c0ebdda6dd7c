"""Models passrt ships a loader for, by name: ``spec = load_model("ssdlite-pedestrian")``.

Each entry is ``module`` (its ``model_spec()``) or ``module:function``; model-specific code lives
there. A path to a model file is a model too, by its suffix (``FILES``): an ``.onnx`` file
(:mod:`passrt.models.onnx_model`) runs with no task head, and commands report its raw outputs
against dense; a Darknet ``.cfg`` (:mod:`passrt.models.darknet`, its ``.weights`` beside it) gets
YOLO decoding when it ends in ``yolo`` layers.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from passrt.errors import PassrtError

if TYPE_CHECKING:  # torch is imported by the model modules, not here: the CLI's --help lists MODELS
    import numpy as np
    import torch
    from torch import nn

    from passrt.models.postprocess import Detections, Keypoints

__all__ = ["FILES", "MODELS", "ModelSpec", "load_model", "module_from_file", "view_of"]


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


FILES: dict[str, str] = {  # a model file's suffix -> what loads it (path -> ModelSpec)
    ".onnx": "passrt.models.onnx_model:from_file",
    ".cfg": "passrt.models.darknet:from_file",
}
FILES_HELP = "a path to an .onnx file or a Darknet .cfg (its .weights beside it)"


def file_loader(name: str | os.PathLike) -> Optional[str]:
    """What loads ``name`` if it is a path to a model file (by its suffix), else None."""
    return FILES.get(os.path.splitext(str(name))[1].lower())


def view_of(x):
    """Where a preprocessed input sits in its frame (:class:`passrt.models.crop.View`), for models whose
    preprocess crops (pose on a person crop); None for inputs that are the whole frame."""
    return getattr(x, "passrt_view", None)


def load_model(name: str) -> ModelSpec:
    # The model modules import ModelSpec from here, so they are found by name, as MODELS lists them.
    loader = file_loader(name)
    if loader is not None:
        return _loader(loader)(name)
    if name not in MODELS:
        raise PassrtError(f"unknown model '{name}'; known models: {', '.join(MODELS)}, or {FILES_HELP}")
    return _loader(MODELS[name])()


def module_from_file(path: str | os.PathLike) -> nn.Module:
    """The network in a model file (``FILES``), for ``sparsify(path)``: its outputs as a tuple."""
    loader = file_loader(path)
    if loader is None:
        raise PassrtError(f"{path}: not a model file passrt reads (suffixes: {', '.join(FILES)})")
    return _loader(loader)(path).module


def _loader(target: str):
    module, _, function = target.partition(":")
    return getattr(importlib.import_module(module), function or "model_spec")
