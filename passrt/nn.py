"""Layers that models may use and the sparse engine understands natively."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow 'SAME' padding along one axis: (before, after); the extra pixel goes after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow's 'SAME' padding, which depends on the input size.

    TF pads stride-2 convolutions asymmetrically (the extra row/column at the bottom/right),
    so a ported TF model cannot use ``nn.Conv2d(padding=k // 2)`` and stay exact. The
    ``padding`` attribute of the base class is ignored (kept at 0).
    """

    def __init__(self, *args, **kwargs):
        kwargs["padding"] = 0
        super().__init__(*args, **kwargs)

    def pads(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) zero padding for an input of this size."""
        top, bottom = same_padding(height, self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = same_padding(width, self.kernel_size[1], self.stride[1], self.dilation[1])
        return top, bottom, left, right

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # int(): under ONNX/JIT tracing the padding becomes a constant of the traced size
        # (an exported graph has a fixed input size) instead of traced shape arithmetic.
        top, bottom, left, right = self.pads(int(x.shape[-2]), int(x.shape[-1]))
        if top == bottom and left == right:  # symmetric: let the conv pad (no copy)
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), self.dilation, self.groups)
        return super().forward(F.pad(x, (left, right, top, bottom)))
