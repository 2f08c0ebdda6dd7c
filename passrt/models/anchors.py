"""SSD anchors, as TensorFlow's Object Detection API generates them for SSDLite.

``MultipleGridAnchorGenerator`` with min_scale 0.2, max_scale 0.95, aspect ratios
(1, 2, 1/2, 3, 0.3333), the interpolated scale with aspect 1, and three boxes in the lowest
layer ((0.1, 1), (0.2, 2), (0.2, 1/2)). Coordinates are normalised (ymin, xmin, ymax, xmax).
For non-square images TF scales the base anchor by min(H, W) / H and min(H, W) / W, so
anchors stay square in pixels; we do the same, which is what makes the detector usable at
the camera's own resolution.
"""

from __future__ import annotations

import math

import numpy as np

MIN_SCALE, MAX_SCALE = 0.2, 0.95
# 0.3333, not 1/3: the value written in the model's pipeline config (recovered from its anchors).
ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 0.3333)
NUM_LAYERS = 6


def feature_map_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """Sizes of the six detection maps: strides 16 and 32 of the backbone, then 4 extra layers.

    Every stride-2 layer with TF 'SAME' padding maps n to ceil(n / 2).
    """
    sizes, h, w = [], height, width
    for level in range(1, 10):
        h, w = -(-h // 2), -(-w // 2)
        if level >= 4:
            sizes.append((h, w))
    return sizes


def _box_specs() -> list[list[tuple[float, float]]]:
    scales = [MIN_SCALE + (MAX_SCALE - MIN_SCALE) * i / (NUM_LAYERS - 1) for i in range(NUM_LAYERS)] + [1.0]
    specs = []
    for i in range(NUM_LAYERS):
        if i == 0:
            specs.append([(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)])
        else:
            layer = [(scales[i], ar) for ar in ASPECT_RATIOS]
            layer.append((math.sqrt(scales[i] * scales[i + 1]), 1.0))
            specs.append(layer)
    return specs


def generate_anchors(image_size: tuple[int, int], feature_maps: list[tuple[int, int]] | None = None) -> np.ndarray:
    """(A, 4) float32 anchors in TF's order: layer, then row, column, box."""
    height, width = image_size
    feature_maps = feature_maps or feature_map_sizes(height, width)
    min_side = min(height, width)
    base_h, base_w = min_side / height, min_side / width
    out = []
    for (fh, fw), spec in zip(feature_maps, _box_specs()):
        f32 = np.float32  # TF does all of this in float32; so do we, to match it to rounding
        scales = np.array([s for s, _ in spec], dtype=f32)
        ratios = np.sqrt(np.array([a for _, a in spec], dtype=f32))
        heights = scales / ratios * f32(base_h)
        widths = scales * ratios * f32(base_w)
        yc = f32(0.5 / fh) + np.arange(fh, dtype=f32) * f32(1.0 / fh)
        xc = f32(0.5 / fw) + np.arange(fw, dtype=f32) * f32(1.0 / fw)
        yc, xc = np.meshgrid(yc, xc, indexing="ij")
        yc, xc = yc[..., None], xc[..., None]  # (fh, fw, 1) against (boxes,)
        boxes = np.stack(np.broadcast_arrays(yc - heights / 2, xc - widths / 2,
                                             yc + heights / 2, xc + widths / 2), -1)
        out.append(boxes.reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)
