"""BlazePose GHUM full landmark model (MediaPipe 0.10.x, Apache-2.0), TensorFlow-free.

``pose_landmark_full.tflite`` from the MediaPipe wheel, imported by
:mod:`passrt.models.tflite_import` and checked against LiteRT on a real frame
(tests/models/test_blazepose.py). Input: a 256x256 RGB image in [0, 1]. Outputs, as the file
gives them: ``landmarks`` (1, 195) = 39 points x (x, y, z, visibility, presence) in input pixels
(the first 33 are the body keypoints; visibility and presence are logits), ``pose_flag`` (1, 1)
(probability that a person is in the input), ``segmentation`` (1, 256, 256, 1) logits, ``heatmap`` (1, 64, 64, 39),
``world`` (1, 117) metric 3-D landmarks. The two model names run only the first two
(``TASK_OUTPUTS``, what keypoints need); ``load_blazepose(outputs=None)`` gives all five.

Two ways to give it a frame, two model names:

- ``blazepose``: a person crop. The SSDLite pedestrian detector (which passrt runs sparse, on the
  frame shrunk to 640 pixels at most, where it finds people 75 to 300 pixels tall) finds the
  people; one is followed
  and cut out by a *held* crop (:mod:`passrt.models.crop`): a ladder of sizes and a grid of
  corners, moved only when the person leaves its inner region. While the person stays inside,
  the landmark model's input holds still wherever the person does, so its sparse engine
  recomputes only what moved. A crop that followed the box every frame would move every pixel of
  the input with every pixel of box jitter, and nothing could be reused. MediaPipe's own pose
  detector (``pose_detection.tflite``, asset ``blazepose-detector``; it imports) was not used:
  it runs on a 224x224 letterbox of the whole frame, where people of a surveillance camera are a
  few pixels tall. One person is followed: each
  further person would need a landmark engine (caches) of its own.
- ``blazepose-landmark``: the whole frame letterboxed into the input (scaled to fit, padded at
  the bottom/right): still wherever the scene is still, but people must fill much of the frame.

:class:`Postprocess` decodes the 33 body keypoints into frame pixels through the input's
:class:`~passrt.models.crop.View` (``passrt run`` draws them, ``passrt bench`` reports their PCK
against the dense model's).
"""

from __future__ import annotations

import numpy as np
import torch

from passrt.models import ModelSpec, view_of
from passrt.models.crop import HeldCrop, View, cut, follow
from passrt.models.postprocess import Keypoints
from passrt.models.tflite_import import load_tflite

NAME = "blazepose-landmark"
CROP_NAME = "blazepose"
SIZE = 256
BODY_POINTS = 33
# The person detector's input: the frame shrunk so that its longer side is at most this. SSDLite's
# anchors keep their 300x300 training size in pixels, so people taller than about 300 pixels go
# unseen at full resolution (pose2sim's, 1000 pixels tall in a 1920-pixel frame); 640 keeps vtest's
# 90-pixel walkers (about 75 pixels there) and finds pose2sim's three people.
DETECT_SIZE = 640
# What the models run: the outputs Postprocess reads (landmarks, pose flag). The segmentation and heatmap
# decoders (all five of its bilinear resizes) and the world landmarks feed nothing else; left out, every
# engine (dense PyTorch, ONNX Runtime, sparse) skips about a third of the landmark model's time.
TASK_OUTPUTS = (0, 1)


def _tensor(rgb_or_bgr: np.ndarray, view: View, bgr: bool = True) -> torch.Tensor:
    """(SIZE, SIZE, 3) uint8 -> (1, 3, SIZE, SIZE) RGB in [0, 1], carrying its :class:`View`."""
    image = rgb_or_bgr[:, :, ::-1] if bgr else rgb_or_bgr
    x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(255.0)[None]
    x.passrt_view = view
    return x


def letterbox_view(image_hw) -> View:
    return View(0.0, 0.0, max(image_hw) / SIZE, float(max(image_hw)))


class Letterbox:
    """BGR uint8 (H, W, 3) -> (1, 3, 256, 256) RGB in [0, 1]: scaled to fit, padded at the bottom/right."""

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        import cv2

        h, w = image.shape[:2]
        scale = SIZE / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
        canvas = np.zeros((SIZE, SIZE, 3), np.uint8)
        canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
        return _tensor(canvas, letterbox_view((h, w)))


class PersonCrop:
    """Preprocess of ``blazepose``: BGR frame -> the held crop of one person, (1, 3, 256, 256).

    ``detector``: the SSDLite :class:`ModelSpec`, run on the frame shrunk to ``detect_size`` (its longer
    side) at most; ``engine`` runs its module (dense here; the
    runtime hands it passrt's sparse engine, :func:`passrt.runtime.backends.open_stages`). The
    person followed is the detection overlapping the last one most, else the largest
    (:func:`~passrt.models.crop.follow`). With nobody held, the frame is letterboxed."""

    def __init__(self, detector: ModelSpec, score_threshold: float = 0.3, detect_size: int = DETECT_SIZE):
        self.detector, self.score_threshold, self.detect_size = detector, score_threshold, detect_size
        self.engine = detector.module
        self.held = HeldCrop()
        self.letterbox = Letterbox()

    def new_stream(self) -> "PersonCrop":
        """The same detector for another stream, with its own crop and (sparse) detector state."""
        other = PersonCrop(self.detector, self.score_threshold, self.detect_size)
        other.engine = self.engine.new_stream() if hasattr(self.engine, "new_stream") else self.engine
        return other

    def reset(self) -> None:
        self.held.reset()
        if hasattr(self.engine, "reset"):
            self.engine.reset()

    def people(self, image: np.ndarray):
        """The detector's person boxes (frame pixels), on the frame shrunk to ``detect_size`` at most."""
        import cv2

        scale = min(1.0, self.detect_size / max(image.shape[:2]))
        small = image if scale == 1.0 else cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        with torch.inference_mode():
            out = self.engine(self.detector.preprocess(small))
        found = self.detector.postprocess(out, small.shape[:2], score_threshold=self.score_threshold)
        return found.boxes / scale

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        boxes = self.people(image)
        i = follow(boxes, self.held.box)
        crop = self.held.update(boxes[i] if i is not None else None)
        if crop is None:
            return self.letterbox(image)
        return _tensor(cut(image, crop, SIZE), crop.view(SIZE))


def keypoints(outputs, view: View | tuple) -> np.ndarray:
    """(33, 3) body keypoints (x, y in frame pixels, visibility as a probability) from the outputs of
    an input placed at ``view`` (an (H, W) frame size: that frame letterboxed)."""
    if not isinstance(view, View):
        view = letterbox_view(view)
    landmarks = np.asarray(outputs[0], np.float32).reshape(-1, 5)[:BODY_POINTS]  # (x, y, z, visibility, presence)
    visibility = 1.0 / (1.0 + np.exp(-landmarks[:, 3]))  # the file gives logits
    return np.concatenate([view.to_frame(landmarks[:, :2]), visibility[:, None]], 1)


class Postprocess:
    """Outputs -> :class:`Keypoints` in frame pixels: one person when the model's pose flag says one is
    there (above 0.5), else none. ``view``: where the input sat in the frame (:func:`view_of` the input);
    without one, a letterbox of an ``image_hw`` frame."""

    def __call__(self, outputs, image_hw, score_threshold: float = 0.5, view: View | None = None) -> Keypoints:
        flag = float(np.asarray(outputs[1]).reshape(-1)[0])
        if flag < 0.5:
            return Keypoints(np.zeros((0, BODY_POINTS, 3), np.float32))
        return Keypoints(keypoints(outputs, view or image_hw)[None].astype(np.float32))


def load_blazepose(path=None, outputs=TASK_OUTPUTS):
    """The landmark model returning ``outputs`` of the file's five (None: all, as the file gives them)."""
    from passrt import assets

    module, hw = load_tflite(path or assets.fetch(NAME), outputs)
    assert hw == (SIZE, SIZE), hw
    return module


def model_spec(path=None) -> ModelSpec:
    return ModelSpec(NAME, load_blazepose(path), Letterbox(), Postprocess(), input_multiple=1, task="pose")


def crop_spec(path=None) -> ModelSpec:
    from passrt.models.ssdlite import model_spec as ssdlite_spec

    return ModelSpec(CROP_NAME, load_blazepose(path), PersonCrop(ssdlite_spec()), Postprocess(), input_multiple=1,
                     task="pose")
