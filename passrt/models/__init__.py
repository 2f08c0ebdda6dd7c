"""Models passrt ships a loader for, by name: ``spec = load_model("ssdlite-pedestrian")``.

Each entry is a module with a ``model_spec()`` function; model-specific code lives there.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from passrt.errors import PassrtError

if TYPE_CHECKING:  # torch is imported by the model modules, not here: the CLI's --help lists MODELS
    import numpy as np
    import torch
    from torch import nn

    from passrt.models.postprocess import Detections

__all__ = ["MODELS", "ModelSpec", "load_model"]


@dataclass
class ModelSpec:
    name: str
    module: nn.Module  # in eval mode
    preprocess: Callable[[np.ndarray], torch.Tensor]  # BGR uint8 (H, W, 3) -> (1, 3, H, W) float32, no resize
    postprocess: Callable[..., Detections]  # (outputs, image_hw, **kw) -> Detections in pixels
    input_multiple: int = 1  # input H and W must be multiples of this (1: any size)


MODELS: dict[str, str] = {"ssdlite-pedestrian": "passrt.models.ssdlite"}  # name -> module


def load_model(name: str) -> ModelSpec:
    if name not in MODELS:
        raise PassrtError(f"unknown model '{name}'; known models: {', '.join(MODELS)}")
    return importlib.import_module(MODELS[name]).model_spec()
