"""The native CPU tile kernels (``torch.ops.passrt.conv_tiles``, C++ in passrt/csrc) on FeatureMaps.

One call per conv step: the conv of the active tiles read straight from the input cache, its
fused epilogue, optionally a fused 1x1 conv after it, written straight into the output cache
(see passrt/csrc/kernels/passrt_tiles.h). :class:`TileConv` holds a conv's weights in the
layout the kernels take, made once per plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from passrt.kernels.storage import FeatureMap
from passrt.kernels.tables import Window


def is_depthwise(weight: torch.Tensor, groups: int) -> bool:
    return groups > 1 and weight.shape[1] == 1 and groups == weight.shape[0]


def supports(weight: torch.Tensor, groups: int) -> bool:
    """The kernels compute ordinary (groups 1) and depthwise convs, float32."""
    return weight.dtype == torch.float32 and (groups == 1 or is_depthwise(weight, groups))


def kernel_weight(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """(C_out, C_in/g, kh, kw) -> [kh*kw*C_in, C_out] (groups 1: the GEMM's right-hand side, rows
    in the (ky, kx, c) order of the gathered windows) or [kh*kw, C] (depthwise: tap-major)."""
    c_out, _, kh, kw = weight.shape
    if groups == 1:
        return weight.permute(2, 3, 1, 0).reshape(-1, c_out).contiguous()
    return weight.reshape(c_out, kh * kw).t().contiguous()


@dataclass(frozen=True)
class Epilogue:
    """``post(act(y) + residual)``: activation codes (contract.ACTIVATION_CODES) and a residual value."""

    act: int = 0
    alpha: float = 0.01
    residual: Optional[str] = None
    post: int = 0


@dataclass
class TileConv:
    """A conv (weights in the kernels' layout) with its epilogue, and optionally a fused 1x1 after it."""

    weight: torch.Tensor
    bias: Optional[torch.Tensor]
    win: Window
    groups: int
    epilogue: Epilogue
    follow_weight: Optional[torch.Tensor] = None  # [C_mid, C_out]
    follow_bias: Optional[torch.Tensor] = None
    follow_epilogue: Epilogue = Epilogue()

    def __call__(self, x: FeatureMap, out: FeatureMap, tile: int, active: torch.Tensor, values: dict) -> None:
        """Recompute the active tiles of ``out`` from ``x``; ``values`` resolves residual names."""
        e, f = self.epilogue, self.follow_epilogue
        rows = lambda name: values[name].rows if name is not None else None  # noqa: E731
        torch.ops.passrt.conv_tiles(
            x.rows, self.weight, self.bias, rows(e.residual), active, out.rows, *self._geometry, self.groups, tile,
            e.act, e.alpha, e.post, self.follow_weight, self.follow_bias, rows(f.residual), f.act, f.alpha, f.post)

    @property
    def _geometry(self) -> list:
        """in_size, out_size, kernel, stride, padding (top, left), dilation: made once (called every frame)."""
        if not hasattr(self, "_geometry_args"):
            win = self.win
            self._geometry_args = [[win.in_h, win.in_w], list(win.out_size), list(win.kernel), list(win.stride),
                                   [win.pads[0], win.pads[2]], list(win.dilation)]
        return self._geometry_args
