"""The PASS gate: from a layer's input now and before, one skip decision per patch.

    patch embedding   conv, kernel = stride = P, on concat(x_t, x_ref)      -> C x Hp x Wp
    mixer blocks      depth x [depthwise 3x3 + residual, then pointwise 1x1]  (ConvMixer-style)
    patch classifier  two layers down to one logit per patch                  -> 1 x Hp x Wp
    normalisation     noise / temperature -> skip probability in [0, 1]

A patch is P x P cells of the gated layer's *input*; with P = tile x stride, the patch grid
is exactly the layer's tile grid, so a decision is a tile of the sparse engine.

Two classifiers:
- ``"conv"`` (default): per patch, 1x1 convs C -> hidden -> 1. The same gate works at every
  input size, so gates trained on small crops or another resolution deploy at any size.
- ``"linear"`` (the paper's): Linear(C*Hp*Wp -> hidden) -> Linear(hidden -> Hp*Wp) over the
  whole patch grid: every decision can see the whole frame, but the gate only accepts the
  input size it was built for, and its parameters grow with that size.

Two normalisations of the logits into a skip probability:
- ``"sigmoid"`` (default): sigmoid((logit + logistic noise) / temperature), a binary
  Concrete relaxation; at inference skip where sigmoid(logit / temperature) > ``skip_above``.
- ``"minmax"`` (the paper's): (logit + Gumbel noise) / temperature, min-max normalised over
  the frame's patches. It forces every frame to have both a 0 and a 1 patch, so a static
  scene can never be skipped whole and a busy one never computed whole: that is why it is
  not the default.
In training, a Bernoulli sample of that probability is the mask, with straight-through
gradients (the forward pass uses the 0/1 sample, the backward pass the probability's).
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Optional

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from passrt.errors import PassrtError
from passrt.policies.gate_config import GateConfig


class MixerBlock(nn.Module):
    """Depthwise 3x3 with a residual branch, then pointwise 1x1 (ConvMixer). No BatchNorm (ConvMixer
    has it): a gate sees one frame at a time, and on the small grids of deep layers a batch
    statistic over one frame's few patches is noise."""

    def __init__(self, c: int):
        super().__init__()
        self.depthwise = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=c), nn.GELU())
        self.pointwise = nn.Sequential(nn.Conv2d(c, c, 1), nn.GELU())

    def forward(self, x):
        return self.pointwise(x + self.depthwise(x))


class PassGate(nn.Module):
    """One gate for a layer with ``in_channels`` input channels and ``patch``-cell patches.

    ``forward(x, x_ref) -> logits`` (N, 1, Hp, Wp); higher means "skip".
    ``grid``: (Hp, Wp), needed (and fixed) only by the linear classifier.
    """

    def __init__(self, in_channels: int, patch: int, config: GateConfig = GateConfig(),
                 grid: Optional[tuple[int, int]] = None):
        super().__init__()
        config.check()
        self.in_channels, self.patch, self.config = in_channels, patch, config
        c = config.channels
        self.embed = nn.Sequential(nn.Conv2d(2 * in_channels, c, patch, stride=patch), nn.GELU())
        self.mixer = nn.Sequential(*[MixerBlock(c) for _ in range(config.depth)])
        if config.classifier == "conv":
            self.grid = None
            self.classify = nn.Sequential(nn.Conv2d(c, config.hidden, 1), nn.GELU(), nn.Conv2d(config.hidden, 1, 1))
        else:
            if grid is None:
                raise PassrtError("the linear gate classifier needs the patch grid (input size) it is built for")
            self.grid = tuple(grid)
            n = grid[0] * grid[1]
            self.classify = nn.Sequential(nn.Flatten(), nn.Linear(c * n, config.hidden), nn.GELU(),
                                          nn.Linear(config.hidden, n))
        # Start by skipping about half of the patches: the budget and triplet terms move it.
        nn.init.zeros_(self.classify[-1].bias)

    def grid_for(self, h: int, w: int) -> tuple[int, int]:
        return math.ceil(h / self.patch), math.ceil(w / self.patch)

    def forward(self, x: torch.Tensor, x_ref: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        grid = self.grid_for(h, w)
        if self.grid is not None and grid != self.grid:
            raise PassrtError(f"this gate's linear classifier was built for a {self.grid[0]}x{self.grid[1]} patch grid "
                              f"and this input ({h}x{w}) gives {grid[0]}x{grid[1]}: use the input size the gates were "
                              "trained at, or train gates with the resolution-independent 'conv' classifier")
        z = torch.cat([x, x_ref], 1)
        ph, pw = grid[0] * self.patch - h, grid[1] * self.patch - w
        if ph or pw:  # edge patches overhang the map: pad them with zeros
            z = F.pad(z, (0, pw, 0, ph))
        t = self.mixer(self.embed(z))
        logits = self.classify(t)
        return logits.view(x.shape[0], 1, *grid)

    def skip_probability(self, logits: torch.Tensor, noise: bool) -> torch.Tensor:
        """Gumbel normalisation of the logits into a skip probability in [0, 1]."""
        tau = self.config.temperature
        if self.config.normalise == "sigmoid":
            if noise:
                u = torch.rand_like(logits).clamp_(1e-6, 1 - 1e-6)
                logits = logits + torch.log(u) - torch.log1p(-u)  # logistic = difference of two Gumbels
            return torch.sigmoid(logits / tau)
        if noise:
            u = torch.rand_like(logits).clamp_(1e-6, 1 - 1e-6)
            logits = logits - torch.log(-torch.log(u))
        z = logits / tau
        lo = z.amin(dim=(2, 3), keepdim=True)
        hi = z.amax(dim=(2, 3), keepdim=True)
        return (z - lo) / (hi - lo).clamp_min(1e-6)

    def sample(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: (0/1 skip mask with straight-through gradients, skip probability)."""
        p = self.skip_probability(logits, noise=True)
        hard = torch.bernoulli(p.detach())
        return hard + (p - p.detach()), p  # exactly 0/1 forward, dp backward

    def decide(self, logits: torch.Tensor, skip_above: float = 0.5) -> torch.Tensor:
        """Inference: deterministic 0/1 skip mask (skip probability without noise > ``skip_above``)."""
        if self.config.normalise == "sigmoid" and 0.0 < skip_above < 1.0:
            # sigmoid(l / tau) > s  <=>  l > tau * logit(s): no exp to overflow, one op fewer in ONNX
            return (logits > self.config.temperature * math.log(skip_above / (1.0 - skip_above))).float()
        return (self.skip_probability(logits, noise=False) > skip_above).float()

    def macs(self, h: int, w: int) -> int:
        """Multiply-accumulates of one call on an (h, w) input."""
        hp, wp = self.grid_for(h, w)
        n, c, hid = hp * wp, self.config.channels, self.config.hidden
        embed = n * c * 2 * self.in_channels * self.patch ** 2
        mixer = self.config.depth * n * (c * 9 + c * c)
        classify = n * (c * hid + hid) if self.grid is None else c * n * hid + hid * n
        return embed + mixer + classify

    def spec(self) -> dict:
        return {"in_channels": self.in_channels, "patch": self.patch, "grid": self.grid, "config": asdict(self.config)}

    @classmethod
    def from_spec(cls, spec: dict) -> "PassGate":
        grid = tuple(spec["grid"]) if spec.get("grid") else None
        return cls(spec["in_channels"], spec["patch"], GateConfig(**spec["config"]), grid)


def save_checkpoint(checkpoint: dict, path) -> None:
    """torch.save through a temporary file and a rename: never a half-written gates file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    tmp.replace(path)
