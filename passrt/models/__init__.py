"""Models passrt ships a loader for, by name: ``load_model("ssdlite-pedestrian")``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from passrt.errors import PassrtError


@dataclass
class ModelSpec:
    name: str
    module: nn.Module
    preprocess: Callable[[np.ndarray], torch.Tensor]  # BGR uint8 HxWx3 -> (1, 3, H, W)
    decode: Callable  # (outputs, image_hw, anchors, **kw) -> Detections
    anchors_for: Callable[[tuple[int, int]], np.ndarray]
    _anchors: dict = field(default_factory=dict)

    def postprocess(self, outputs, image_hw: tuple[int, int], **kw):
        """Detections for one frame; anchors are generated once per input size."""
        if image_hw not in self._anchors:
            self._anchors[image_hw] = self.anchors_for(image_hw)
        return self.decode(outputs, image_hw, self._anchors[image_hw], **kw)


def bgr_to_rgb_tensor(frame: np.ndarray) -> torch.Tensor:
    """BGR uint8 (H, W, 3) -> RGB float32 (1, 3, H, W) in [0, 1], at the frame's own size."""
    rgb = np.ascontiguousarray(frame[:, :, ::-1])
    return torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def _ssdlite() -> ModelSpec:
    from passrt.models.anchors import generate_anchors
    from passrt.models.postprocess import detect
    from passrt.models.ssdlite import load_ssdlite_pedestrian

    def decode(outputs, image_hw, anchors, **kw):
        boxes, logits = outputs
        return detect(boxes[0], logits[0], anchors, image_hw, **kw)

    return ModelSpec("ssdlite-pedestrian", load_ssdlite_pedestrian(), bgr_to_rgb_tensor, decode, generate_anchors)


MODELS: dict[str, Callable[[], ModelSpec]] = {"ssdlite-pedestrian": _ssdlite}


def load_model(name: str) -> ModelSpec:
    if name not in MODELS:
        raise PassrtError(f"unknown model '{name}'; known models: {', '.join(MODELS)}")
    return MODELS[name]()
