"""``pass``: the learned policy. Each gated conv's gate picks its tiles; the layers after it
follow that gate's mask (see :mod:`passrt.gates.gateset`).

Each gate compares the gated conv's input now with a reference input:
- ``compare="reference"`` (default): the input the conv's cached output was computed from,
  moved only on the patches that were recomputed (as the exact policy does with pixels). A
  patch skipped frame after frame keeps being compared with what its cache saw, so slow
  changes add up until the gate recomputes them: skipping cannot drift without bound.
- ``compare="previous"``: the previous frame's input, as in the paper. Slow changes can then be
  skipped forever; bound the drift with ``refresh_every``.

``margin`` (not in the paper; RegionDrop's idea): the gated conv computes exactly its kept
patches, but the layers that follow it recompute a ring of ``margin`` patches more, because
a change reaches the outputs around it through their receptive fields.

A frame is a dense refresh on the first frame, after ``reset()``, on a resolution change and
every ``refresh_every`` frames; per layer, above ``crossover`` it runs dense. ``scene_cut`` is
not used: a scene cut makes every gate keep its patches, and the crossover runs them dense.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from passrt.engine import masks
from passrt.engine.policies import FrameContext, Policy, _nonempty
from passrt.errors import PassrtError


@dataclass
class PassGates(Policy):
    name = "pass"
    gates: Optional[str] = None  # path of a gates file (`passrt train-gates`)
    skip_above: float = 0.5  # a patch is skipped when its skip probability is above this
    compare: str = "reference"  # or "previous"
    margin: int = 0  # the layers *after* a gated conv also recompute this many patches around its kept ones

    def __post_init__(self):
        if self.margin < 0:
            raise PassrtError(f"policy 'pass': margin must be >= 0, got {self.margin}")
        if self.compare not in ("reference", "previous"):
            raise PassrtError(f"policy 'pass': compare must be 'reference' or 'previous', got '{self.compare}'")
        self.net = None
        if self.gates is not None:
            from passrt.gates.gateset import load

            self.use(load(self.gates))
        self._plan_key = None
        self.reset()

    @classmethod
    def load(cls, path, **params) -> "PassGates":
        """The policy for the gates file ``path``; ``params`` as for any policy (skip_above, ...)."""
        return cls(gates=str(path), **params)

    @classmethod
    def from_gates(cls, net, **params) -> "PassGates":
        """The policy for in-memory gates (a :class:`~passrt.gates.gateset.GateSet`)."""
        policy = cls(**params)
        policy.use(net)
        return policy

    def use(self, net) -> None:
        self.net = net.eval()
        # Patches were sized for the tile settings the gates were trained with.
        for name, value in net.tiles.items():
            setattr(self, name, value)

    def reset(self):
        self.refs: dict[str, torch.Tensor] = {}
        self._grids: dict[str, Optional[tuple]] = {}
        self._frame: dict = {}

    def begin_frame(self, ctx, x, refresh):
        if self.net is None:
            raise PassrtError("policy 'pass' needs gates: --gates PATH (train them with `passrt train-gates`)")
        self._grids, self._per_grid = {}, {}
        self._frame = {"gate_macs": 0.0, "gates": {}}
        if refresh or not self.refs:
            return True
        ctx.changed[ctx.input_name] = FrameContext.FULL  # what changed is for the gates to judge
        return False

    def after_refresh(self, steps, env):
        key = tuple(s.name for s in steps)
        if key != self._plan_key:
            self._bind(steps)
            self._plan_key = key
        by_label = {s.label: s for s in steps}
        self.refs = {label: env[by_label[label].srcs[0]].nchw().clone() for label in self.net.labels()}

    def _bind(self, steps) -> None:
        """Check the gates against the plan and give every spatial step the gates it follows."""
        from passrt.engine.steps import SpatialStep
        from passrt.gates.gateset import conv_sites

        self.net.check_steps(steps)
        sites = conv_sites(steps)
        self._owner: dict[str, Optional[frozenset]] = {}
        for step in steps:
            if not isinstance(step, SpatialStep):
                continue
            if step.label in self.net.sites and step.label in sites:
                self._owner[step.name] = frozenset([step.label])
                continue
            owners = [self._owner.get(name) for name, _ in step.input_refs()]
            self._owner[step.name] = frozenset().union(*owners) if owners and all(owners) else None

    def step_tiles(self, step, ctx):
        if step.label in self.net.sites and step.name in self._owner:
            self._run_gate(step.label, ctx.env[step.srcs[0]].nchw())
        owners = self._owner.get(step.name)
        if owners is None:  # fed by the frame or a dense op with no gate upstream: exact propagation
            return super().step_tiles(step, ctx)
        own = step.label in self.net.sites
        key = (owners, own, step.shape[1], step.shape[2], step.tile)
        if key not in self._per_grid:
            grids = [self._grids[g][0 if own else 1] for g in owners if self._grids.get(g) is not None]
            self._per_grid[key] = _nonempty(masks.union([g.tiles_for(*key[2:]) for g in grids]))
        tiles = self._per_grid[key]
        ctx.changed[step.name] = FrameContext.FULL if tiles is not None else None
        return tiles

    def _run_gate(self, label: str, x: torch.Tensor) -> None:
        gate, ref = self.net.gate(label), self.refs[label]
        skip = gate.decide(gate(x, ref), self.skip_above)
        keep = 1.0 - skip
        h, w = x.shape[2:]
        if bool(keep.any()):  # (the gated conv's own grid, its followers' grid with the margin)
            grid = masks.BlockGrid(keep, gate.patch, h, w)
            wide = masks.BlockGrid(masks.dilate(keep, self.margin), gate.patch, h, w) if self.margin else grid
            self._grids[label] = (grid, wide)
        else:
            self._grids[label] = None
        if self.compare == "previous":
            ref.copy_(x)
        elif self._grids[label] is not None:
            from passrt.gates.gate import expand_patches

            ref.copy_(torch.where(expand_patches(keep, gate.patch, h, w) > 0, x, ref))
        macs = gate.macs(h, w)
        self._frame["gate_macs"] += macs
        self._frame["gates"][label] = {"skip_rate": patch_skip_rate(skip, gate.patch, h, w), "macs": macs}

    def overhead_macs(self) -> float:
        return self._frame.get("gate_macs", 0.0)

    def frame_stats(self) -> dict:
        return {"gates": self._frame.get("gates", {}), "gate_macs": self.overhead_macs()}

    def describe(self) -> dict:
        out = super().describe()
        if self.net is not None:
            out["gated_layers"] = self.net.labels()
            out["gate_config"] = self.net.spec_summary()
        return out


def patch_skip_rate(skip: torch.Tensor, patch: int, h: int, w: int) -> float:
    """The paper's R_p (eq. 2) for one gated layer: N K^2 / (X_w X_h), N skipped K x K patches
    of an X_w x X_h input; edge patches that overhang the input count by the area they cover."""
    from passrt.gates.gate import expand_patches

    return float(expand_patches(skip, patch, h, w).sum()) / (h * w)
