"""A PASS gate's hyper-parameters (torch-free: the CLI builds its options from them)."""

from __future__ import annotations

from dataclasses import dataclass

from passrt.errors import PassrtError
from passrt.options import option


@dataclass
class GateConfig:
    """Hyper-parameters of one gate (the paper's ranges: C 64-256, depth 2-16, hidden 4096,
    temperature 0.5-0.7; smaller defaults here because a gate's MACs count against its savings)."""

    channels: int = option(16, "gate width C")
    depth: int = option(2, "gate mixer blocks")
    hidden: int = option(32, "gate classifier hidden size")
    temperature: float = option(0.6, "Gumbel temperature")
    classifier: str = option("conv", "'conv': per patch, any input size; 'linear': the paper's, one input size",
                             choices=("conv", "linear"))
    normalise: str = option("sigmoid", "'sigmoid' or the paper's per-frame 'minmax' normalisation of the logits",
                            choices=("sigmoid", "minmax"))

    def check(self) -> None:
        if self.classifier not in ("conv", "linear"):
            raise PassrtError(f"gate classifier must be 'conv' or 'linear', got '{self.classifier}'")
        if self.normalise not in ("sigmoid", "minmax"):
            raise PassrtError(f"gate normalise must be 'sigmoid' or 'minmax', got '{self.normalise}'")
        for name in ("channels", "depth", "hidden"):
            if getattr(self, name) < (0 if name == "depth" else 1):
                raise PassrtError(f"gate {name} must be positive, got {getattr(self, name)}")
        if not self.temperature > 0:
            raise PassrtError(f"gate temperature must be > 0, got {self.temperature}")
