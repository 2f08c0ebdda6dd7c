"""``pass`` with ``design=common`` (the default): one learned mask per frame at the input.

RegionDrop's structure with a learned decision: per frame, the common gate
(:mod:`passrt.policies.common_gate`) sees every 16x16 block's change against the reference,
measured in units of the stream's noise level, and says which blocks to recompute; the kept
blocks are dilated by ``margin`` blocks (the receptive fields of the layers reach across a
block edge), and every layer recomputes the tiles that cover a kept block, as RegionDrop's
layers do. The reference moves only in the kept blocks (not the margin), so a skipped slow
change keeps adding up against what the caches saw until the gate recomputes it; the noise
level is RegionDrop's estimate (:mod:`passrt.policies.noise`), scene cuts refresh the same way.

Only the block decision differs from RegionDrop's: the frame-level bookkeeping (states,
refresh, rescaling, crossover) is RegionDrop's own code, reused by subclassing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from passrt.policies.regiondrop import RegionDrop, RegionDropMasks


@dataclass
class CommonPass(RegionDrop):
    """Not a registered policy name: ``pass`` builds it (``PassGates(design="common")``)."""

    name = "pass"
    skip_above: float = 0.5

    def __post_init__(self):
        super().__post_init__()
        self.gate = None  # a CommonGate, set by use()
        self._ran = False

    def use(self, gate) -> None:
        self.gate = gate.eval()
        cfg = gate.config
        self.block, self.min_pixels, self.noise_multiple = cfg.block, cfg.min_pixels, cfg.noise_multiple

    def mask_source(self, plan) -> "CommonGateMasks":
        return CommonGateMasks(plan, self)

    def begin_frame(self, ctx, x, refresh):
        full = super().begin_frame(ctx, x, refresh)
        self._ran = not full
        return full

    def operating_knob(self):
        return None  # the learned decision has no threshold to lower (skip_above is a probability)

    def overhead_macs(self) -> float:
        return float(self.masks.overhead_macs()) if self._ran and self.masks is not None else 0.0

    def frame_stats(self) -> dict:
        out = super().frame_stats()
        if self.masks is not None and getattr(self.masks, "kept", None) is not None:
            out["gate_macs"] = self.overhead_macs()
            out["kept_blocks"] = float(self.masks.kept.mean())
        return out


class CommonGateMasks(RegionDropMasks):
    """RegionDrop's mask source with the block decision made by the common gate (standard tensor
    ops; with ``in_place`` the reference and previous-frame states are updated by passrt's C++
    kernels, as RegionDrop's are)."""

    def __init__(self, plan, policy: CommonPass):
        super().__init__(plan, policy)
        self.gate = policy.gate
        self.gate_macs = self.gate.macs(self.frame_h, self.frame_w)
        self.kept = None

    def changed_blocks(self, image, ref, limit, in_place: bool) -> torch.Tensor:
        """The gate's decision replaces RegionDrop's test: the blocks it keeps (``limit``: the stream's
        change threshold, the unit of the gate's features)."""
        with torch.no_grad():
            feats = self.gate.features(image, ref, limit, native=in_place)  # in_place: the C++ kernels are there
            kept = 1.0 - self.gate.decide(self.gate(feats), self.p.skip_above)
        self.kept = kept[0, 0]
        return kept

    def overhead_macs(self):
        return (1.0 - self.full) * self.gate_macs  # the gate runs on every frame but refreshes
