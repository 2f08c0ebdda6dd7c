"""The policies' tile masks as standard tensor ops (they export as standard ONNX ops).

A mask source gives the program, for one frame (``begin``), each spatial step's tile mask
(``step_mask``, asked in plan order with the values computed so far; a dense refresh marks
every tile), its own MACs as a fraction of the model's (``overhead``) and its new state
(what ``begin`` and ``end`` return). Both follow the streaming engine's rules exactly (refreshes, crossover, rescaling):

- :class:`RegionDropMasks`: the frame difference against the reference, blocks, margin,
  scene cut; one block mask rescaled to every layer by 0/1 matrices (state: the reference).
- :class:`PassMasks`: each gated conv's gate on its input and its reference input; the
  layers after it follow their gates' masks, rescaled the same way (state: one reference
  input per gate).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from passrt.engine.masks import block_span
from passrt.engine.policies import RegionDrop
from passrt.engine.steps import SpatialStep
from passrt.export.node_ref import cells_of


def span_matrices(h: int, w: int, tile: int, map_h: int, map_w: int, block: int):
    """0/1 matrices R (Ht, Hb), C (Wb, Wt): tiles = (R @ blocks @ C) > 0 is a BlockGrid rescale."""
    out = []
    for n, map_n in ((h, map_h), (w, map_w)):
        lo, hi = block_span(n, map_n, tile, block)
        r = torch.arange(-(-map_n // block))
        out.append(((r[None] >= lo[:, None]) & (r[None] < hi[:, None])).float())
    return out[0], out[1].t().contiguous()


class _Masks(nn.Module):
    state_keys: list
    state_shapes: list

    def __init__(self, crossover: float):
        super().__init__()
        self.crossover = crossover
        self._matrices: dict = {}

    def _matrix_pair(self, key, *args):
        """Registered once as buffers, so they follow the program to its device and export as initializers."""
        if key not in self._matrices:
            name = "tiles_" + "_".join(str(k).replace(".", "_") for k in key)
            for part, m in zip(("rows", "cols"), span_matrices(*args)):
                self.register_buffer(f"{name}_{part}", m, persistent=False)
            self._matrices[key] = (f"{name}_rows", f"{name}_cols")
        rows, cols = self._matrices[key]
        return self._buffers[rows], self._buffers[cols]

    def _finish(self, tiles, full):
        """Crossover (above it a layer computes every tile) and refresh, on a (Ht, Wt) 0/1 grid."""
        crossover = (tiles.sum().reshape(1) > self.crossover * tiles.numel()).float()
        tiles = torch.maximum(tiles, torch.maximum(full, crossover))
        return tiles.reshape(1, 1, *tiles.shape)


class RegionDropMasks(_Masks):
    def __init__(self, plan, policy: RegionDrop):
        super().__init__(policy.crossover)
        self.p = policy
        _, _, self.frame_h, self.frame_w = plan.input_shape
        self.state_keys, self.state_shapes = ["ref"], [plan.input_shape]
        for step in plan.steps:
            if isinstance(step, SpatialStep):
                self._matrix_pair(*self._key(step))

    def _key(self, step):
        h, w, t = step.shape[1], step.shape[2], step.tile
        return (h, w, t), h, w, t, self.frame_h, self.frame_w, self.p.block

    def begin(self, image, refresh, states):
        p, ref = self.p, states[0]
        changed = ((image - ref).abs().amax(1, keepdim=True) > p.threshold).float()
        counts = F.avg_pool2d(changed, p.block, p.block, ceil_mode=True) * (p.block ** 2)  # as RegionDrop
        blocks = (counts >= p.min_pixels).float()
        if p.margin > 0:
            blocks = F.max_pool2d(blocks, 2 * p.margin + 1, 1, p.margin)
        cut = (blocks.mean().reshape(1) > p.scene_cut).float()
        self._full = torch.maximum(refresh.reshape(1), cut)  # 1: this frame is a dense refresh
        region = cells_of(blocks, p.block, self.frame_h, self.frame_w)
        self._blocks = blocks[0, 0]
        self._per_grid = {}
        return [torch.where(torch.maximum(region, self._full.reshape(1, 1, 1, 1)) > 0, image, ref)]

    def step_mask(self, step, values):
        key = self._key(step)
        if key[0] not in self._per_grid:
            rows, cols = self._matrix_pair(*key)
            self._per_grid[key[0]] = self._finish(((rows @ self._blocks @ cols) > 0).float(), self._full)
        return self._per_grid[key[0]]

    def overhead(self):
        return 0.0

    def end(self):
        return []


class PassMasks(_Masks):
    """``policy``: a :class:`~passrt.gates.PassGates` bound to ``plan`` (its gates become submodules)."""

    def __init__(self, plan, policy, macs_dense: float):
        super().__init__(policy.crossover)
        self.p = policy
        policy._bind(plan.steps)
        self.owners = dict(policy._owner)
        self.gates = policy.net  # exported as standard ops
        steps = {s.label: s for s in plan.steps if isinstance(s, SpatialStep)}
        shapes = {s.name: s.shape for s in plan.steps if hasattr(s, "shape")}
        self.labels = policy.net.labels()
        self.gate_src = {label: steps[label].srcs[0] for label in self.labels}
        self.gate_in = {label: shapes[self.gate_src[label]] for label in self.labels}
        self.state_keys = [f"gate_ref.{label}" for label in self.labels]
        self.state_shapes = [(1, *self.gate_in[label]) for label in self.labels]
        self.gate_fraction = sum(policy.net.gate(label).macs(*self.gate_in[label][1:]) for label in self.labels) \
            / macs_dense
        for step in plan.steps:
            for g in self.owners.get(step.name) or ():
                self._matrix_pair(*self._key(step, g))

    def _key(self, step, gate):
        _, h, w = self.gate_in[gate]
        patch = self.gates.gate(gate).patch
        return (gate, step.shape[1], step.shape[2], step.tile), step.shape[1], step.shape[2], step.tile, h, w, patch

    def begin(self, image, refresh, states):
        self._full = refresh.reshape(1)
        self._refs = dict(zip(self.labels, states))
        self._keep, self._new_refs = {}, {}
        return []

    def step_mask(self, step, values):
        if step.label in self._refs and step.name in self.owners:
            self._run_gate(step.label, values[step.srcs[0]])
        owners = self.owners.get(step.name)
        if owners is None:  # no gate upstream: compute every tile (the engine's propagation from FULL)
            return torch.ones(1, 1, *step.grid, device=self._full.device)
        own = step.label in self._refs
        tiles = None
        for g in sorted(owners):
            keep = self._keep[g]
            if not own and self.p.margin:
                keep = F.max_pool2d(keep[None, None], 2 * self.p.margin + 1, 1, self.p.margin)[0, 0]
            rows, cols = self._matrix_pair(*self._key(step, g))
            t = ((rows @ keep @ cols) > 0).float()
            tiles = t if tiles is None else torch.maximum(tiles, t)
        return self._finish(tiles, self._full)

    def _run_gate(self, label, x):
        gate = self.gates.gate(label)
        keep = 1.0 - gate.decide(gate(x, self._refs[label]), self.p.skip_above)
        self._keep[label] = keep[0, 0]
        if self.p.compare == "previous":
            self._new_refs[label] = x
        else:
            moved = torch.maximum(cells_of(keep, gate.patch, x.shape[2], x.shape[3]), self._full.reshape(1, 1, 1, 1))
            self._new_refs[label] = torch.where(moved > 0, x, self._refs[label])

    def overhead(self):
        return (1.0 - self._full) * self.gate_fraction  # the gates run on every frame but refreshes

    def end(self):
        return [self._new_refs[label] for label in self.labels]
