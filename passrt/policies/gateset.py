"""Which convolutions get a gate, and the set of gates as one module and one file.

A gate sits in front of a *gated* conv (by module path, e.g. ``blocks.2.expand.0``) and
decides its tiles. Every other layer follows the gate upstream of it (through its inputs:
the conv's *group*): it recomputes the cells that read the gate's kept patches (see
:mod:`passrt.policies.pass_gates`); a layer fed by the frame itself or by a dense (non-local)
op with no gate upstream computes every tile.

Default placement, for any CNN: at every input resolution, the conv with the fewest input
channels (the first such). A gate's patch embedding costs 2 x C_in x C MACs per input cell,
so the cheapest conv of each resolution gives the same spatial coverage for the least gate
cost; on SSDLite at 768x576 that is 12 gates costing about 4 % of the dense MACs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from passrt.plan.steps import ConvStep
from passrt.errors import PassrtError
from passrt.policies.gate import GateConfig, PassGate, save_checkpoint

FORMAT = "passrt-gates/1"


@dataclass
class Site:
    """Where a gate sits: the gated conv, its input, and the patch (= its tile grid on the input)."""

    label: str  # module path of the conv
    in_channels: int
    in_hw: tuple[int, int]
    patch: int  # input cells per patch side: the conv's tile (output cells) x its stride


def conv_sites(steps) -> dict[str, Site]:
    """Every conv that heads one of a plan's ``steps`` (a fused 1x1 follower is part of its head's step)."""
    shapes = {s.name: s.shape for s in steps if hasattr(s, "shape")}
    sites = {}
    for step in steps:
        if isinstance(step, ConvStep):
            c, h, w = shapes[step.srcs[0]]
            sites[step.label] = Site(step.label, c, (h, w), step.tile * step.win.stride[0])
    return sites


def default_layers(steps) -> list[str]:
    """Per input resolution, the first conv with the fewest input channels."""
    best: dict[tuple[int, int], Site] = {}
    for site in conv_sites(steps).values():
        if site.in_hw not in best or site.in_channels < best[site.in_hw].in_channels:
            best[site.in_hw] = site
    return [s.label for s in best.values()]


def _key(label: str) -> str:
    return label.replace(".", "__")  # ModuleDict keys cannot contain dots


class GateSet(nn.Module):
    """The gates of one model, keyed by gated conv, with what is needed to use them again:
    the model, the tile settings the patches were sized for, and how they were trained."""

    def __init__(self, model: str, sites: list[Site], config: GateConfig, tiles: dict,
                 linear_grids: Optional[dict] = None):
        super().__init__()
        self.model, self.tiles, self.config = model, dict(tiles), config
        self.sites = {s.label: s for s in sites}
        grids = linear_grids or {}
        self.gates = nn.ModuleDict({
            _key(s.label): PassGate(s.in_channels, s.patch, config, grids.get(s.label)) for s in sites})
        self.info: dict = {}  # training record (steps, losses, arguments), saved with the gates
        self.backbone: Optional[dict] = None  # fine-tuned backbone weights (stage 2), if any

    @classmethod
    def for_steps(cls, model: str, steps, config: GateConfig, tiles: dict,
                  layers: Optional[list[str]] = None) -> "GateSet":
        """Gates for the convs ``layers`` (default: :func:`default_layers`) of a plan's ``steps``."""
        sites = conv_sites(steps)
        layers = default_layers(steps) if layers is None else layers
        unknown = [label for label in layers if label not in sites]
        if unknown:
            raise PassrtError(f"cannot gate {', '.join(unknown)}: not a conv heading a step of this model; "
                              f"gateable convs: {', '.join(sites)}")
        chosen = [sites[label] for label in layers]
        grids = None
        if config.classifier == "linear":
            grids = {s.label: (math.ceil(s.in_hw[0] / s.patch), math.ceil(s.in_hw[1] / s.patch)) for s in chosen}
        return cls(model, chosen, config, tiles, grids)

    def forward(self, inputs: dict) -> dict:
        """{label: (x, x_ref)} -> {label: skip logits}: all gates in one call (what DDP wraps)."""
        return {label: self.gate(label)(x, ref) for label, (x, ref) in inputs.items()}

    def gate(self, label: str) -> PassGate:
        return self.gates[_key(label)]

    def labels(self) -> list[str]:
        return list(self.sites)

    def spec_summary(self) -> dict:
        return asdict(self.config)

    def check_steps(self, steps) -> None:
        """The plan must have every gated conv with the channels and patch the gate was built for."""
        sites = conv_sites(steps)
        for label, want in self.sites.items():
            got = sites.get(label)
            if got is None:
                raise PassrtError(f"these gates are for a model with a conv '{label}' (model {self.model}); "
                                  "this model has none: were they trained for another model?")
            if (got.in_channels, got.patch) != (want.in_channels, want.patch):
                raise PassrtError(f"gate for '{label}' expects {want.in_channels} input channels and {want.patch}-cell "
                                  f"patches, the model gives {got.in_channels} and {got.patch}: the gates were trained "
                                  "for another model or other tile settings")

    # ---- files ------------------------------------------------------------------------------
    def checkpoint(self, **extra) -> dict:
        return {
            "format": FORMAT,
            "model": self.model,
            "tiles": self.tiles,
            "config": asdict(self.config),
            "sites": [asdict(s) for s in self.sites.values()],
            "grids": {label: list(g.grid) for label in self.sites if (g := self.gate(label)).grid},
            "state_dict": self.state_dict(),
            "info": self.info,
            "backbone": self.backbone,
            **extra,
        }

    def save(self, path: str | Path, **extra) -> None:
        save_checkpoint(self.checkpoint(**extra), path)

    @classmethod
    def from_checkpoint(cls, ckpt: dict) -> "GateSet":
        sites = [Site(s["label"], s["in_channels"], tuple(s["in_hw"]), s["patch"]) for s in ckpt["sites"]]
        grids = {k: tuple(v) for k, v in ckpt.get("grids", {}).items()}
        gates = cls(ckpt["model"], sites, GateConfig(**ckpt["config"]), ckpt["tiles"], grids)
        gates.load_state_dict(ckpt["state_dict"])
        gates.info, gates.backbone = ckpt.get("info", {}), ckpt.get("backbone")
        return gates.eval()


def read_checkpoint(path: str | Path) -> dict:
    """A gates file as a dict, or a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise PassrtError(f"{path}: no such gates file (train gates with `passrt train-gates ... --out {path}`)")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same one line
        raise PassrtError(f"{path}: not a readable gates file ({str(e).splitlines()[0][:200]})") from None
    if isinstance(ckpt, dict) and ckpt.get("design") == "common":
        raise PassrtError(f"{path} holds a common-design gate: this needs paper-design gates (`passrt train-gates "
                          "--design paper`)")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise PassrtError(f"{path}: not a passrt gates file (expected format {FORMAT})")
    return ckpt


def load(path: str | Path) -> GateSet:
    return GateSet.from_checkpoint(read_checkpoint(path))


def load_any(path: str | Path):
    """Gates of either PASS design from a file: a :class:`GateSet` (paper) or a
    :class:`~passrt.policies.common_gate.CommonGate` (common), or a one-line error."""
    from passrt.policies import common_gate

    path = Path(path)
    if path.is_file():
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - read_checkpoint below says why in one line
            ckpt = None
        if isinstance(ckpt, dict) and ckpt.get("format") == common_gate.FORMAT:
            try:
                return common_gate.CommonGate.from_checkpoint(ckpt)
            except PassrtError as e:
                raise PassrtError(f"{path}: {e}") from None
    return load(path)
