"""The native executor: the reference executor with its conv steps run by passrt's C++ tile kernels.

Convs are most of a CNN's time, and in the reference executor a sparse conv is several
PyTorch calls (gather patches with their halos, conv or GEMM, epilogue ops, scatter) whose
intermediate tensors are as large as the patches. Here each conv step is one call of
``torch.ops.passrt.conv_tiles`` (:mod:`passrt.kernels.native`): windows read straight from the
input cache, one GEMM, epilogue and write-back fused. Everything else (masks, pooling,
upsampling, other elementwise steps, convs whose epilogue the kernels do not compute, dense
frames) is the reference executor's, so the two agree step by step and the reference stays
the oracle of every test. RegionDrop's per-frame rule also runs its full-frame operations in
C++ here (one pass each instead of several tensor ops).
"""

from __future__ import annotations

from typing import Optional

import torch

from passrt.engine.reference import ReferenceExecutor
from passrt.kernels import native
from passrt.plan.epilogue import kernel_epilogue
from passrt.plan.steps import ConvStep, SpatialStep

NAME = "native (C++ tile kernels, CPU)"


class NativeExecutor(ReferenceExecutor):
    name = NAME
    native_kernels = True  # RegionDrop's frame-level rule runs in C++ too (policies/regiondrop.py)

    def __init__(self, plan, policy, dtype: torch.dtype, dense_engine=None, dense_above: float = 0.5):
        super().__init__(plan, policy, dtype, dense_engine, dense_above)
        spatial = {s.name for s in plan.steps if isinstance(s, SpatialStep)} | {plan.input_name}
        self.convs = {s.name: c for s in plan.steps if isinstance(s, ConvStep)
                      for c in [tile_conv(s, spatial)] if c is not None}

    def run_sparse(self, step: SpatialStep, active: torch.Tensor) -> None:
        conv = self.convs.get(step.name)
        if conv is None:
            step.run_sparse(self.env, active)
        else:
            conv(self.env[step.srcs[0]], self.env[step.name], step.tile, active, self.env)

    def native_fraction(self) -> float:
        """The share of the plan's conv MACs (per cell) that the native kernels run."""
        convs = [s for s in self.plan.steps if isinstance(s, ConvStep)]
        total = sum(s.macs_per_cell * s.shape[1] * s.shape[2] for s in convs)
        done = sum(s.macs_per_cell * s.shape[1] * s.shape[2] for s in convs if s.name in self.convs)
        return done / total if total else 1.0


def tile_conv(step: ConvStep, spatial: set) -> Optional[native.TileConv]:
    """The step as one native call, or None when the kernels cannot compute it (other dtypes, grouped
    convs that are not depthwise, an epilogue other than [act] [+ residual] [act], a residual that is
    not a spatial value)."""
    convs = [step] + ([step.follow] if step.follow is not None else [])
    epilogues = []
    for conv in convs:
        if not native.supports(conv.weight, conv.groups):
            return None
        epi = kernel_epilogue(conv.epilogue, step.name)
        if epi is None or (epi[2] is not None and epi[2] not in spatial):
            return None
        epilogues.append(native.Epilogue(epi[0], epi[1], epi[2], epi[3]))
    conv = native.TileConv(native.kernel_weight(step.weight, step.groups), _contiguous(step.bias), step.win,
                           step.groups, epilogues[0])
    if step.follow is not None:
        conv.follow_weight, conv.follow_bias = step.follow.weight_t.contiguous(), _contiguous(step.follow.bias)
        conv.follow_epilogue = epilogues[1]
    return conv


def _contiguous(t: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
    return t.detach().contiguous() if t is not None else None


__all__ = ["NativeExecutor"]
