"""The common-mask PASS gate: one learned decision per input block, computed once per frame.

PASS as published puts a gate in front of every conv; on a MobileNet that costs more than it
saves, and with one gate per resolution the masks grow at every residual add (they union).
This gate keeps RegionDrop's structure (one mask at the input, rescaled for every layer, so it
never grows) and learns the decision the rule hand-sets: which 16x16 blocks of the frame to
recompute. It departs from the paper's gate in what it looks at: instead of asking a patch
embedding to learn a subtraction from concat(X^t, X^ref), it is given the change explicitly,
measured against the stream's noise level tau (:mod:`passrt.policies.noise`):

    per block (``block`` x ``block`` pixels), from d = max_c |X^t - X^ref|:
      log1p(#{d > m tau} / min_pixels) for m in MULTIPLES   how many pixels changed, at 4 levels
      log1p(mean d / tau), log1p(max d / tau)               how much
      mean of X^t and of X^ref per channel, minus 0.5        what the block looks like now and before
      log(255 tau)                                          how noisy the stream is

then a small network over the block grid (a 3x3 conv, so a decision sees its neighbours;
``depth`` ConvMixer blocks; a two-layer per-block classifier) gives one skip logit per block.
The per-pixel part is a few comparisons per pixel, the network runs on the block grid (1728
blocks at 768x576): 12.8 MMACs, about 0.45 % of SSDLite's dense MACs (:meth:`CommonGate.macs`).

RegionDrop's own test (at least ``min_pixels`` pixels above tau) is the first count feature
compared with log(2), so the gate can represent the rule exactly; training starts by imitating it
(:mod:`passrt.training.common`) and then learns where the rule recomputes more than the model's
outputs need.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from passrt.errors import PassrtError
from passrt.plan import masks
from passrt.policies.gate import MixerBlock, save_checkpoint

FORMAT = "passrt-common-gate/1"
MULTIPLES = (0.5, 1.0, 2.0, 4.0)  # count features: pixels changed by more than m x tau
FEATURES = len(MULTIPLES) + 2 + 6 + 1


@dataclass
class CommonGateConfig:
    """Sizes of the common gate, and the block rule it refines (RegionDrop's defaults)."""

    channels: int = 16
    depth: int = 1
    hidden: int = 32
    temperature: float = 1.0
    block: int = 16
    min_pixels: int = 8
    noise_multiple: float = 4.0  # tau = noise_multiple x the stream's noise level, as RegionDrop's 'auto'


def block_statistics(x: torch.Tensor, ref: torch.Tensor, limits: list, block: int,
                     native: bool = False) -> torch.Tensor:
    """(1, len(limits) + 2 + 2C, Hb, Wb) block averages, from d = max_c |x - ref|: the share of pixels with
    d > limit for each of ``limits`` (numbers or (1, 1, 1, 1) tensors), d's mean and max, x's and ref's
    channels. ``native``: one C++ pass (passrt's ``frame_block_features``, float32 CPU frames; equal to
    these tensor ops, tested), 30x faster than the tensor ops at 768x576 on one core."""
    if native:
        from passrt.kernels import native as kernels

        return kernels.block_features(x, ref, [float(v) for v in limits], block)
    d = masks.pixel_change(x, ref)  # (1, 1, H, W)
    # ceil_mode with no padding: an edge block is averaged over the pixels it has.
    stacked = torch.cat([(d > v).float() for v in limits] + [d], 1)
    return torch.cat([F.avg_pool2d(stacked, block, block, ceil_mode=True),
                      F.max_pool2d(d, block, block, ceil_mode=True),
                      F.avg_pool2d(torch.cat([x, ref], 1), block, block, ceil_mode=True)], 1)


def features_from_statistics(stats: torch.Tensor, tau: torch.Tensor, block: int, min_pixels: int) -> torch.Tensor:
    """The gate's (1, FEATURES, Hb, Wb) input from :func:`block_statistics` at limits m x tau (MULTIPLES):
    counts scaled by the full block area, as RegionDrop's test scales them."""
    tau = tau.reshape(1, 1, 1, 1)
    k = len(MULTIPLES)
    counts = torch.log1p(stats[:, :k] * (float(block * block) / min_pixels))
    mean_d = torch.log1p(stats[:, k:k + 1] / tau)
    max_d = torch.log1p(stats[:, k + 1:k + 2] / tau)
    looks = stats[:, k + 2:] - 0.5
    noise = torch.log(255 * tau).expand_as(mean_d)
    return torch.cat([counts, mean_d, max_d, looks, noise], 1)


def block_features(x: torch.Tensor, ref: torch.Tensor, tau: torch.Tensor, block: int, min_pixels: int,
                   native: bool = False) -> torch.Tensor:
    """(1, FEATURES, Hb, Wb) block features of a (1, 3, H, W) frame against its reference; ``tau`` (1,).
    Standard tensor ops (traceable: the exported graph computes these) unless ``native``."""
    tau = tau.reshape(1, 1, 1, 1)
    stats = block_statistics(x, ref, [m * tau for m in MULTIPLES], block, native)
    return features_from_statistics(stats, tau, block, min_pixels)


class CommonGate(nn.Module):
    """``forward(features) -> skip logits`` (1, 1, Hb, Wb); higher means "skip the block"."""

    def __init__(self, config: CommonGateConfig = CommonGateConfig(), model: str = "", tiles: dict | None = None):
        super().__init__()
        self.config, self.model, self.tiles = config, model, dict(tiles or {})
        c = config.channels
        self.embed = nn.Sequential(nn.Conv2d(FEATURES, c, 3, padding=1), nn.GELU())
        self.mixer = nn.Sequential(*[MixerBlock(c) for _ in range(config.depth)])
        self.classify = nn.Sequential(nn.Conv2d(c, config.hidden, 1), nn.GELU(), nn.Conv2d(config.hidden, 1, 1))
        self.info: dict = {}  # training record, saved with the gate

    def features(self, x, ref, tau, native: bool = False):
        return block_features(x, ref, tau, self.config.block, self.config.min_pixels, native)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classify(self.mixer(self.embed(features)))

    def skip_probability(self, logits: torch.Tensor, noise: bool) -> torch.Tensor:
        """sigmoid((logit + logistic noise) / temperature): the binary Concrete relaxation."""
        if noise:
            u = torch.rand_like(logits).clamp_(1e-6, 1 - 1e-6)
            logits = logits + torch.log(u) - torch.log1p(-u)
        return torch.sigmoid(logits / self.config.temperature)

    def sample(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: (0/1 skip mask with straight-through gradients, skip probability)."""
        p = self.skip_probability(logits, noise=True)
        hard = torch.bernoulli(p.detach())
        return hard + (p - p.detach()), p

    def decide(self, logits: torch.Tensor, skip_above: float = 0.5) -> torch.Tensor:
        """Inference: 0/1 skip mask, sigmoid(logit / T) > skip_above, without noise."""
        if 0.0 < skip_above < 1.0:
            return (logits > self.config.temperature * math.log(skip_above / (1.0 - skip_above))).float()
        return (self.skip_probability(logits, noise=False) > skip_above).float()

    def macs(self, h: int, w: int) -> int:
        """Multiply-accumulates (and the per-pixel operations counted as such) of one frame (h, w).

        Per pixel: 3 differences + the max over channels, one comparison per multiple, the
        division by tau and the three pooled sums, the means of 6 input channels. Per block:
        the network's convs."""
        b, c, hid = self.config.block, self.config.channels, self.config.hidden
        n = math.ceil(h / b) * math.ceil(w / b)
        per_pixel = 4 + len(MULTIPLES) + 4 + 6
        net = n * (FEATURES * c * 9 + self.config.depth * (c * 9 + c * c) + c * hid + hid)
        return h * w * per_pixel + net

    # ---- files --------------------------------------------------------------------------------
    def checkpoint(self, **extra) -> dict:
        return {"format": FORMAT, "design": "common", "model": self.model, "tiles": self.tiles,
                "config": asdict(self.config), "state_dict": self.state_dict(), "info": self.info, **extra}

    def save(self, path, **extra) -> None:
        save_checkpoint(self.checkpoint(**extra), path)

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> "CommonGate":
        try:
            gate = cls(CommonGateConfig(**ckpt["config"]), ckpt.get("model", ""), ckpt.get("tiles"))
            gate.load_state_dict(ckpt["state_dict"])
        except (KeyError, TypeError, RuntimeError) as e:
            raise PassrtError(f"not a usable common-gate file ({str(e).splitlines()[0][:200]})") from None
        gate.info = ckpt.get("info", {})
        return gate.eval()
