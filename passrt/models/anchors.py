"""SSD anchors, as TensorFlow's Object Detection API generates them for SSDLite.

``ssd_anchor_generator`` / ``MultipleGridAnchorGenerator`` with min_scale 0.2, max_scale 0.95,
aspect ratios (1, 2, 1/2, 3, 0.3333), one extra anchor per cell of aspect 1 at the scale
interpolated with the next layer's, and ``reduce_boxes_in_lowest_layer``: three boxes
((0.1, 1), (0.2, 2), (0.2, 1/2)) in the first layer. Anchor centres are at the cell centres;
coordinates are normalised (ymin, xmin, ymax, xmax); the order is layer, row, column, box.

The network was trained on 300x300 images, and its convolutions are the same at any input
size: a head responds to an object of the same size *in pixels* whatever the image size. So
at an (H, W) input the anchors keep their training sizes in pixels (``TRAIN_SIDE`` x scale),
centred on the cells of the maps the network actually produces. (TF's generator scales anchors
with the image instead; run at 768x576 that made every box about 1.9x too large.) At 300x300
the two coincide, and everything is computed in float32, in TF's order of operations, so the
anchors equal TF's to the last bit there.

:func:`trusted_heads` says which heads are meaningful at a size: see there.
"""

from __future__ import annotations

import math

import numpy as np

# The pipeline config stores these as protobuf *float* (float32) fields, and TF computes the
# per-layer scales in Python doubles from those float32 values: use the same values, or the
# interpolated anchor of the 3x3 layer comes out 1 ulp off (sqrt(0.65 * 0.8) is close to a tie).
MIN_SCALE, MAX_SCALE = float(np.float32(0.2)), float(np.float32(0.95))
# 0.3333 rather than 1/3: the value written in the model's pipeline config. (The two differ by
# up to 4e-5 in the 3:1 anchors' sides; TF's reference anchors match 0.3333.)
ASPECT_RATIOS = (1.0, 2.0, 0.5, 3.0, 0.3333)
NUM_LAYERS = 6
TRAIN_SIDE = 300  # the pipeline config's fixed_shape_resizer: every training image was 300x300
BACKBONE_HALVINGS = 4  # the first detection map is at stride 16; each of the next five halves it


def feature_map_sizes_for(image_size: tuple[int, int]) -> list[tuple[int, int]]:
    """(h, w) of the six detection maps for an input of ``image_size`` = (H, W).

    Computed rather than measured: every stride-2 layer with TF 'SAME' padding maps n to
    ceil(n / 2), whatever the kernel. The maps are the backbone's stride-16 and stride-32
    features, then the four extra layers. ``tests/models`` checks the resulting anchor count
    against the model's own outputs, at 576x768 and at an odd size.
    """
    h, w = image_size
    sizes = []
    for level in range(1, BACKBONE_HALVINGS + NUM_LAYERS):
        h, w = -(-h // 2), -(-w // 2)
        if level >= BACKBONE_HALVINGS:
            sizes.append((h, w))
    return sizes


def box_specs() -> list[list[tuple[float, float]]]:
    """(scale, aspect ratio) of the anchors of each layer, as ``ssd_anchor_generator`` lists them."""
    scales = [MIN_SCALE + (MAX_SCALE - MIN_SCALE) * i / (NUM_LAYERS - 1) for i in range(NUM_LAYERS)] + [1.0]
    specs = [[(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]]
    for i in range(1, NUM_LAYERS):
        specs.append([(scales[i], ar) for ar in ASPECT_RATIOS] + [(math.sqrt(scales[i] * scales[i + 1]), 1.0)])
    return specs


def anchors_per_cell() -> list[int]:
    return [len(spec) for spec in box_specs()]


def generate_anchors(image_size: tuple[int, int],
                     feature_map_sizes: list[tuple[int, int]] | None = None) -> np.ndarray:
    """(A, 4) float32 anchors for an (H, W) input; the maps default to ``feature_map_sizes_for``."""
    f32 = np.float32
    height, width = image_size
    if feature_map_sizes is None:
        feature_map_sizes = feature_map_sizes_for(image_size)
    # Anchor sides in pixels as at training, as fractions of this image's sides (1 at 300x300).
    base_h, base_w = f32(TRAIN_SIDE) / f32(height), f32(TRAIN_SIDE) / f32(width)
    out = []
    for (fh, fw), spec in zip(feature_map_sizes, box_specs()):
        scales = np.array([s for s, _ in spec], dtype=f32)
        ratio_sqrts = np.sqrt(np.array([a for _, a in spec], dtype=f32))
        heights = scales / ratio_sqrts * base_h
        widths = scales * ratio_sqrts * base_w
        stride_y, stride_x = f32(1) / f32(fh), f32(1) / f32(fw)
        yc = np.arange(fh, dtype=f32) * stride_y + f32(0.5) * stride_y
        xc = np.arange(fw, dtype=f32) * stride_x + f32(0.5) * stride_x
        yc, xc = yc[:, None, None], xc[None, :, None]  # (fh, 1, 1), (1, fw, 1) against (boxes,)
        hh, hw = f32(0.5) * heights, f32(0.5) * widths
        boxes = np.stack(np.broadcast_arrays(yc - hh, xc - hw, yc + hh, xc + hw), -1)
        out.append(boxes.reshape(-1, 4))
    return np.concatenate(out).astype(f32)


def trusted_heads(image_size: tuple[int, int]) -> list[bool]:
    """Per detection layer: whether its outputs mean at an (H, W) input what they meant in training.

    A layer whose map was one cell along an axis at 300x300 (the last one: 1x1) was trained as a
    whole-image classifier along that axis: its single cell saw the image from border to border,
    with padding on both sides. Once the map has several cells along that axis each cell sees a
    part of the image and its borders on one side only, which training never showed it. Measured
    on vtest at 768x576 (2x2 map), that layer alone gave 106 of 218 detections in 30 frames,
    every one a 250-300 px box on grass or buildings, and 116 spurious boxes on bigbuckbunny at
    1280x720; the other layers gave none of those. A layer whose training map had several cells
    along both axes learned local decisions, which hold at any size.
    """
    train = feature_map_sizes_for((TRAIN_SIDE, TRAIN_SIDE))
    now = feature_map_sizes_for(image_size)
    return [all(t > 1 or n == 1 for t, n in zip(trained, current)) for trained, current in zip(train, now)]


def trusted_anchors(image_size: tuple[int, int]) -> np.ndarray:
    """(A,) bool over :func:`generate_anchors`' anchors: those of :func:`trusted_heads`."""
    sizes = feature_map_sizes_for(image_size)
    counts = [fh * fw * k for (fh, fw), k in zip(sizes, anchors_per_cell())]
    return np.repeat(np.array(trusted_heads(image_size)), counts)
