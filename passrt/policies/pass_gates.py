"""``pass``: the learned policy, in two designs (docs/PASS.md):

- ``design="common"`` (the default, :mod:`passrt.policies.pass_common`): one learned mask per
  frame at the input, dilated by a margin and rescaled for every layer (RegionDrop's structure,
  a learned decision);
- ``design="paper"`` (the paper's, this module): each gated conv's gate picks its tiles; the
  layers after it follow that gate's mask (see :mod:`passrt.policies.gateset`).

The gates file says which design it holds; ``design`` given explicitly must match it. What
follows describes the paper design.

Each gate compares the gated conv's input now with a reference input:
- ``compare="reference"`` (default): the input the conv's cached output was computed from,
  moved only on the patches that were recomputed (as the exact policy does with pixels). A
  patch skipped frame after frame keeps being compared with what its cache saw, so slow
  changes add up until the gate recomputes them: skipping cannot drift without bound.
- ``compare="previous"``: the previous frame's input, as in the paper. Slow changes can then be
  skipped forever; bound the drift with ``refresh_every``.

What a kept patch recomputes: every cell that reads it. A 3x3 conv's output cells along the
edge of a skipped patch read the kept patch next to it, so the gated conv, and each layer
after it, recomputes the cells whose windows reach a kept patch (its change propagated cell by
cell through the windows, as the exact policy does), rounded up to tiles: the kept tiles, and
their neighbours where a kernel reaches across the patch edge. Without that, those edge cells
would keep what they computed from the kept patch's old input while its reference moves on,
and a slow change of a kept patch (recomputed now and then) would add up on its skipped
neighbours' edges without bound.

``margin`` (not in the paper; RegionDrop's idea): the layers that follow a gated conv also
recompute a ring of ``margin`` patches around the kept ones.

A frame is a dense refresh on the first frame, after ``reset()``, on a resolution change and
every ``refresh_every`` frames; per layer, above ``crossover`` it runs dense. ``scene_cut`` is
not used: a scene cut makes every gate keep its patches, and the crossover runs them dense.

The rule is written once, in :class:`PassMasks` (standard tensor ops: the gates export to ONNX
with it); the eager engine runs the same source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from passrt.errors import PassrtError
from passrt.plan import masks
from passrt.plan.steps import SpatialStep
from passrt.policies.base import FrameContext, MaskSource, Policy, nonempty
from passrt.policies.gateset import conv_sites

DESIGNS = ("common", "paper")


@dataclass
class PassGates(Policy):
    name = "pass"
    gates: Optional[str] = None  # path of a gates file (`passrt train-gates`)
    skip_above: float = 0.5  # a patch is skipped when its skip probability is above this
    compare: str = "reference"  # or "previous" (paper design)
    # paper design: the layers *after* a gated conv also recompute this many patches more around its
    # kept ones (default 0); common design: kept blocks are dilated by this many blocks (default 1)
    margin: Optional[int] = None
    design: Optional[str] = None  # "common" or "paper"; default: what the gates file holds

    def __post_init__(self):
        if self.margin is not None and self.margin < 0:
            raise PassrtError(f"policy 'pass': margin must be >= 0, got {self.margin}")
        if self.compare not in ("reference", "previous"):
            raise PassrtError(f"policy 'pass': compare must be 'reference' or 'previous', got '{self.compare}'")
        if self.design not in (None,) + DESIGNS:
            raise PassrtError(f"policy 'pass': design must be one of {', '.join(DESIGNS)}, got '{self.design}'")
        self.net = None
        self.common = None  # the common design's policy (CommonPass), when the gates are common ones
        if self.gates is not None:
            from passrt.policies.gateset import load_any

            self.use(load_any(self.gates))
        self.masks: Optional[PassMasks] = None  # the mask source of the current plan
        self.reset()

    @classmethod
    def load(cls, path, **params) -> "PassGates":
        """The policy for the gates file ``path``; ``params`` as for any policy (skip_above, ...)."""
        return cls(gates=str(path), **params)

    @classmethod
    def from_gates(cls, net, **params) -> "PassGates":
        """The policy for in-memory gates (a :class:`~passrt.policies.gateset.GateSet`)."""
        policy = cls(**params)
        policy.use(net)
        return policy

    def use(self, net) -> None:
        """Gates of either design: a GateSet (paper) or a CommonGate (common)."""
        from passrt.policies.common_gate import CommonGate

        design = "common" if isinstance(net, CommonGate) else "paper"
        if self.design is not None and self.design != design:
            raise PassrtError(f"policy 'pass': design={self.design} asked for, but the gates file holds {design}-design "
                              f"gates (train them with `passrt train-gates --design {self.design}`)")
        self.design = design
        # Patches were sized for the tile settings the gates were trained with.
        for name, value in net.tiles.items():
            setattr(self, name, value)
        if design == "paper":
            self.net = net.eval()
            self.margin = 0 if self.margin is None else self.margin
            return
        from passrt.policies.pass_common import CommonPass

        self.margin = 1 if self.margin is None else self.margin
        self.common = CommonPass(margin=self.margin, skip_above=self.skip_above, scene_cut=self.scene_cut,
                                 crossover=self.crossover, refresh_every=self.refresh_every, tile_px=self.tile_px,
                                 min_tile=self.min_tile, max_tile=self.max_tile)
        self.common.use(net)
        self.net = net

    def reset(self):
        self.refs: Optional[list] = None  # one reference input per gate, in the gates' order
        self._ran = False
        if getattr(self, "common", None) is not None:
            self.common.reset()

    def mask_source(self, plan) -> "PassMasks":
        if self.net is None:
            raise PassrtError("policy 'pass' needs gates: --gates PATH (train them with `passrt train-gates`)")
        if self.common is not None:
            return self.common.mask_source(plan)
        return PassMasks(plan, self)

    # The common design delegates every per-frame call to its CommonPass.
    def begin_frame(self, ctx, x, refresh):
        if self.common is not None:
            return self.common.begin_frame(ctx, x, refresh)
        if self.masks is None or self.masks.plan is not ctx.plan:
            self.masks = self.mask_source(ctx.plan)
            self.refs = None
        self._ran = False
        if refresh or self.refs is None:
            return True
        self.masks.begin(x, x.new_zeros(1), self.refs)
        self._ran = True
        ctx.changed[ctx.input_name] = FrameContext.FULL  # what changed is for the gates to judge
        return False

    def step_tiles(self, step, ctx):
        if self.common is not None:
            return self.common.step_tiles(step, ctx)
        tiles = nonempty(self.masks.step_mask(step, ctx.value))
        ctx.changed[step.name] = FrameContext.FULL if tiles is not None else None
        return tiles

    def end_frame(self):
        if self.common is not None:
            return self.common.end_frame()
        if self._ran:
            self.refs = self.masks.end()

    def after_refresh(self, steps, env):
        if self.common is not None:
            return self.common.after_refresh(steps, env)
        by_label = {s.label: s for s in steps}
        self.refs = [env[by_label[label].srcs[0]].nchw().clone() for label in self.net.labels()]

    def overhead_macs(self) -> float:
        if self.common is not None:
            return self.common.overhead_macs()
        return float(self.masks.overhead_macs()) if self._ran else 0.0

    def frame_stats(self) -> dict:
        if self.common is not None:
            return self.common.frame_stats()
        gates = self.masks.gate_stats() if self._ran else {}
        return {"gates": gates, "gate_macs": self.overhead_macs()}

    def describe(self) -> dict:
        out = super().describe()
        if self.common is not None:
            from dataclasses import asdict

            out["gate_config"] = asdict(self.net.config)
        elif self.net is not None:
            out["gated_layers"] = self.net.labels()
            out["gate_config"] = self.net.spec_summary()
        return out


def gate_owners(steps, net) -> dict[str, Optional[frozenset]]:
    """Per spatial step, the gates whose masks it follows (None: no gate upstream, compute everything).

    A gated conv follows its own gate; any other step follows the union of its inputs' gates,
    when every input has one (an input fed by the frame or a dense op with no gate upstream
    may have changed anywhere)."""
    net.check_steps(steps)
    sites = conv_sites(steps)
    owners: dict[str, Optional[frozenset]] = {}
    for step in steps:
        if not isinstance(step, SpatialStep):
            continue
        if step.label in net.sites and step.label in sites:
            owners[step.name] = frozenset([step.label])
            continue
        inputs = [owners.get(name) for name, _ in step.input_refs()]
        owners[step.name] = frozenset().union(*inputs) if inputs and all(inputs) else None
    return owners


class PassMasks(MaskSource):
    """PASS's rule for one plan (state: one reference input per gate). The gates are submodules,
    so they export as standard ops and follow the source to its device."""

    def __init__(self, plan, policy: PassGates):
        super().__init__(policy.crossover)
        self.plan, self.p = plan, policy
        self.owners = gate_owners(plan.steps, policy.net)
        self.gates = policy.net
        steps = {s.label: s for s in plan.steps if isinstance(s, SpatialStep)}
        shapes = {s.name: s.shape for s in plan.steps if hasattr(s, "shape")}
        self.labels = policy.net.labels()
        self.gate_src = {label: steps[label].srcs[0] for label in self.labels}
        self.gate_in = {label: shapes[self.gate_src[label]] for label in self.labels}
        self.state_keys = [f"gate_ref.{label}" for label in self.labels]
        self.state_shapes = [(1, *self.gate_in[label]) for label in self.labels]
        self.gate_macs = sum(policy.net.gate(label).macs(*self.gate_in[label][1:]) for label in self.labels)
        for step in plan.steps:
            for g in self.owners.get(step.name) or ():
                self._rescale(step, g, None)  # registers the step's rescale matrices

    def begin(self, image, refresh, states):
        self.full = refresh.reshape(1)
        self._refs = dict(zip(self.labels, states))
        self._keep, self._skip, self._new_refs = {}, {}, {}
        self._reads = {}  # value name -> its cells that read a patch kept this frame
        return []

    def step_mask(self, step, value):
        if step.label in self._refs and step.name in self.owners:
            self._run_gate(step.label, value(step.srcs[0]))
        owners = self.owners.get(step.name)
        if owners is None:  # no gate upstream: compute every tile
            return torch.ones(1, 1, *step.grid, device=self.full.device)
        own = step.label in self._refs
        # The cells that read a kept patch: a gated conv's kept patches through its window, a
        # follower's inputs' such cells through its own (an input with no gate upstream is computed
        # in full, and only a gated conv may have one: its gate speaks for its tiles).
        reads = [self._reads.get(name) for name, _ in step.input_refs()]
        if own:
            g = step.label
            _, h, w = self.gate_in[g]
            reads[0] = masks.cells_of(self._keep[g][None, None], self.gates.gate(g).patch, h, w)
        cells = step.propagate(reads)
        self._reads[step.name] = cells
        tiles = masks.to_tiles(cells, step.tile)[0, 0]
        if not own and self.p.margin:
            for g in sorted(owners):
                ring = masks.dilate(self._keep[g][None, None], self.p.margin)[0, 0]
                tiles = torch.maximum(tiles, self._rescale(step, g, ring))
        return self.finish(tiles)

    def _rescale(self, step, gate, keep):
        _, h, w = self.gate_in[gate]
        patch = self.gates.gate(gate).patch
        if keep is None:
            keep = torch.zeros(-(-h // patch), -(-w // patch))
        key = (gate, step.shape[1], step.shape[2], step.tile)
        return self.rescale(key, keep, step.shape[1], step.shape[2], step.tile, h, w, patch)

    def _run_gate(self, label, x):
        gate = self.gates.gate(label)
        skip = gate.decide(gate(x, self._refs[label]), self.p.skip_above)
        keep = 1.0 - skip
        self._keep[label], self._skip[label] = keep[0, 0], skip
        if self.p.compare == "previous":
            self._new_refs[label] = x.clone()  # x may be a cache that the next frame rewrites in place
        else:
            moved = torch.maximum(masks.cells_of(keep, gate.patch, x.shape[2], x.shape[3]),
                                  self.full.reshape(1, 1, 1, 1))
            self._new_refs[label] = torch.where(moved > 0, x, self._refs[label])

    def overhead_macs(self):
        return (1.0 - self.full) * self.gate_macs  # the gates run on every frame but refreshes

    def end(self):
        return [self._new_refs[label] for label in self.labels]

    def gate_stats(self) -> dict:
        """Per gate, the paper's R_p of the last frame and its MACs (host figures, eager engine only)."""
        out = {}
        for label, skip in self._skip.items():
            _, h, w = self.gate_in[label]
            out[label] = {"skip_rate": patch_skip_rate(skip, self.gates.gate(label).patch, h, w),
                          "macs": self.gates.gate(label).macs(h, w)}
        return out


def patch_skip_rate(skip: torch.Tensor, patch: int, h: int, w: int) -> float:
    """The paper's R_p (eq. 2) for one gated layer: N K^2 / (X_w X_h), N skipped K x K patches
    of an X_w x X_h input; edge patches that overhang the input count by the area they cover."""
    return float(masks.cells_of(skip, patch, h, w).sum()) / (h * w)
