"""BlazePose GHUM full landmark model (MediaPipe 0.10.x, Apache-2.0), TensorFlow-free.

``pose_landmark_full.tflite`` from the MediaPipe wheel, imported by
:mod:`passrt.models.tflite_import` and checked against LiteRT on a real frame
(tests/models/test_blazepose.py). Input: a 256x256 RGB image in [0, 1]. Outputs, as the file
gives them: ``landmarks`` (1, 195) = 39 points x (x, y, z, visibility, presence) in input pixels
(the first 33 are the body keypoints; visibility and presence are logits), ``pose_flag`` (1, 1)
(probability that a person is in the input), ``segmentation`` (1, 256, 256, 1) logits, ``heatmap`` (1, 64, 64, 39),
``world`` (1, 117) metric 3-D landmarks.

Here the whole frame is letterboxed into the 256x256 input (scaled to fit, padded at the
bottom/right): on a still camera the input stays still wherever the scene does, which is what
temporal sparsity needs. MediaPipe instead runs it on a crop that follows the person; a crop
that moves with every small change of the person's box shows the model a new image each frame.
:class:`Postprocess` decodes the 33 body keypoints into frame pixels (``passrt run`` draws them,
``passrt bench`` reports their PCK against the dense model's).
"""

from __future__ import annotations

import numpy as np
import torch

from passrt.models import ModelSpec
from passrt.models.postprocess import Keypoints
from passrt.models.tflite_import import load_tflite

NAME = "blazepose-landmark"
SIZE = 256
BODY_POINTS = 33


class Letterbox:
    """BGR uint8 (H, W, 3) -> (1, 3, 256, 256) RGB in [0, 1]: scaled to fit, padded at the bottom/right."""

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        import cv2

        h, w = image.shape[:2]
        scale = SIZE / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        canvas = np.zeros((SIZE, SIZE, 3), np.float32)
        canvas[:nh, :nw] = resized[:, :, ::-1].astype(np.float32) / 255.0
        return torch.from_numpy(canvas.transpose(2, 0, 1).copy())[None]


def keypoints(outputs, image_hw: tuple[int, int]) -> np.ndarray:
    """(33, 3) body keypoints (x, y in frame pixels, visibility as a probability) from the outputs
    of a letterboxed frame of size ``image_hw``."""
    landmarks = np.asarray(outputs[0], np.float32).reshape(-1, 5)[:BODY_POINTS]  # (x, y, z, visibility, presence)
    scale = SIZE / max(image_hw)
    visibility = 1.0 / (1.0 + np.exp(-landmarks[:, 3]))  # the file gives logits
    return np.stack([landmarks[:, 0] / scale, landmarks[:, 1] / scale, visibility], 1)


class Postprocess:
    """Outputs of a letterboxed frame -> :class:`Keypoints`: one person when the model's pose flag
    says one is there (above 0.5), else none."""

    def __call__(self, outputs, image_hw, score_threshold: float = 0.5) -> Keypoints:
        flag = float(np.asarray(outputs[1]).reshape(-1)[0])
        if flag < 0.5:
            return Keypoints(np.zeros((0, BODY_POINTS, 3), np.float32))
        return Keypoints(keypoints(outputs, image_hw)[None].astype(np.float32))


def load_blazepose(path=None):
    from passrt import assets

    module, hw = load_tflite(path or assets.fetch(NAME))
    assert hw == (SIZE, SIZE), hw
    return module


def model_spec(path=None) -> ModelSpec:
    return ModelSpec(NAME, load_blazepose(path), Letterbox(), Postprocess(), input_multiple=1, task="pose")
