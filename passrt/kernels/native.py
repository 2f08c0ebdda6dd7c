"""The native CPU kernels (C++ in passrt/csrc, passrt/csrc/kernels/passrt_tiles.h) for the engine.

- ``torch.ops.passrt.conv_tiles``, one call per conv step: the conv of the active tiles read
  straight from the input cache, its fused epilogue, optionally a fused 1x1 conv after it,
  written straight into the output cache. :class:`TileConv` holds a conv's weights in the
  layout the kernels take, made once per plan.
- Frame-level change operations (RegionDrop's per-frame rule), each equal to the tensor ops
  named in its docstring, in one pass over the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from passrt.kernels.storage import FeatureMap
from passrt.kernels.tables import Window


def row_matrix(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    """A channels-last single-image map as its [cells, C] rows (a view: writes reach the map)."""
    return t.permute(0, 2, 3, 1).view(-1, t.shape[1]) if t is not None else None


def row_matrices_ok(*maps) -> bool:
    """Single-image float32 CPU maps stored channels-last (or None), so each is a [cells, C] row matrix as
    it is: what the CPU kernels read and write in place."""
    return all(t is None or (t.device.type == "cpu" and t.dtype == torch.float32 and t.shape[0] == 1
                             and t.is_contiguous(memory_format=torch.channels_last)) for t in maps)


def is_depthwise(weight: torch.Tensor, groups: int) -> bool:
    return groups > 1 and weight.shape[1] == 1 and groups == weight.shape[0]


def supports(weight: torch.Tensor, groups: int) -> bool:
    """The kernels compute ordinary (groups 1) and depthwise convs, float32 (CPU and CUDA) or float16 (CUDA;
    the executors check the device)."""
    return weight.dtype in (torch.float32, torch.float16) and (groups == 1 or is_depthwise(weight, groups))


def kernel_weight(weight: torch.Tensor, groups: int) -> torch.Tensor:
    """(C_out, C_in/g, kh, kw) -> [kh*kw*C_in, C_out] (groups 1: the GEMM's right-hand side, rows
    in the (ky, kx, c) order of the gathered windows), [kh*kw, C] (depthwise: tap-major), or for
    another grouped conv each group's GEMM operand stacked, [g * kh*kw*C_in/g, C_out/g] (what
    ``conv_tiles`` and the TensorRT plugin's kernelLayoutCuda take; the executors run groups 1 and
    depthwise only, ``supports``)."""
    c_out, c_in_g, kh, kw = weight.shape
    if groups == 1:
        return weight.permute(2, 3, 1, 0).reshape(-1, c_out).contiguous()
    if is_depthwise(weight, groups):
        return weight.reshape(c_out, kh * kw).t().contiguous()
    w = weight.reshape(groups, c_out // groups, c_in_g, kh, kw)
    return w.permute(0, 3, 4, 2, 1).reshape(-1, c_out // groups).contiguous()


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

    def __post_init__(self):
        win = self.win  # in_size, out_size, kernel, stride, padding (top, left), dilation: made once
        self._geometry = [[win.in_h, win.in_w], list(win.out_size), list(win.kernel), list(win.stride),
                          [win.pads[0], win.pads[2]], list(win.dilation)]

    def __call__(self, x: FeatureMap, out: FeatureMap, tile: int, active: torch.Tensor, values: dict) -> None:
        """Recompute the active tiles of ``out`` from ``x``; ``values`` resolves residual names."""
        e, f = self.epilogue, self.follow_epilogue
        rows = lambda name: values[name].rows if name is not None else None  # noqa: E731
        torch.ops.passrt.conv_tiles(
            x.rows, self.weight, self.bias, rows(e.residual), active, out.rows, *self._geometry, self.groups, tile,
            e.act, e.alpha, e.post, self.follow_weight, self.follow_bias, rows(f.residual), f.act, f.alpha, f.post)


@dataclass
class TileAffine:
    """An elementwise ``x * scale + shift`` ([C] each) on the active tiles of a map (an input normalisation)."""

    scale: torch.Tensor
    shift: torch.Tensor
    size: tuple

    def __call__(self, x: FeatureMap, out: FeatureMap, tile: int, active: torch.Tensor) -> None:
        torch.ops.passrt.affine_tiles(x.rows, self.scale, self.shift, active, out.rows, list(self.size), tile)



class TileProgram:
    """Native steps recorded once with their caches and weights (in plan order), then run per frame in
    one call with each step's active tile ids (an empty tensor skips the step): no Python per step."""

    def __init__(self):
        self._program = torch.classes.passrt.TileProgram()

    def add_conv(self, conv: TileConv, x: FeatureMap, out: FeatureMap, tile: int, values: dict) -> None:
        e, f = conv.epilogue, conv.follow_epilogue
        rows = lambda n: values[n].rows if n is not None else None  # noqa: E731
        self._program.add_conv(x.rows, conv.weight, conv.bias, rows(e.residual), out.rows,
                               [v for pair in conv._geometry for v in pair], conv.groups, tile, e.act, e.alpha, e.post,
                               conv.follow_weight, conv.follow_bias, rows(f.residual), f.act, f.alpha, f.post)

    def add_affine(self, affine: TileAffine, x: FeatureMap, out: FeatureMap, tile: int) -> None:
        self._program.add_affine(x.rows, affine.scale, affine.shift, out.rows, list(affine.size), tile)

    def __call__(self, tiles: list) -> None:
        self._program.run(tiles)

def block_rank_changes(a: torch.Tensor, others: list, block: int, rank: int) -> torch.Tensor:
    """(len(others), blocks): row j = ``passrt.policies.noise._block_statistic(a, others[j], block, rank)``
    (frames at least a block in size), ``a`` read once."""
    return torch.ops.passrt.frame_block_rank_change(a, list(others), block, rank)


def block_change_counts(a: torch.Tensor, b: torch.Tensor, limit: float, block: int) -> torch.Tensor:
    """= ``F.avg_pool2d((pixel_change(a, b) > limit).float(), block, block, ceil_mode=True) * block ** 2``."""
    return torch.ops.passrt.frame_block_counts(a, b, float(limit), block)


def block_features(a: torch.Tensor, b: torch.Tensor, limits: list, block: int) -> torch.Tensor:
    """= ``passrt.policies.common_gate.block_statistics(a, b, limits, block)`` (its tensor path), in one pass."""
    return torch.ops.passrt.frame_block_features(a, b, [float(v) for v in limits], block)


def pixel_changes_(ref: torch.Tensor, a: torch.Tensor, limit: float) -> torch.Tensor:
    """= ``(pixel_change(a, ref) > limit).float()``, and in place ``ref = a`` at those pixels."""
    return torch.ops.passrt.frame_pixel_changes_(ref, a, float(limit))


def row_changes_(ref: torch.Tensor, src: torch.Tensor, rows: torch.Tensor, threshold: float,
                 cells: int) -> torch.Tensor:
    """[cells] 0/1: the ``rows`` (int64) where ``(src[rows] - ref[rows]).abs().amax(1) > threshold``; in place
    ``ref[those] = src[those]`` (row caches [>= cells, C])."""
    return torch.ops.passrt.row_changes_(ref, src, rows, float(threshold), int(cells))


def copy_blocks_(dst: torch.Tensor, src: torch.Tensor, mask: torch.Tensor, block: int) -> torch.Tensor:
    """In place, = ``torch.lerp(dst, src, cells_of(mask, block, H, W))`` for a 0/1 block ``mask``."""
    torch.ops.passrt.frame_copy_blocks_(dst, src, mask.reshape(-1).contiguous().float(), block)
    return dst
