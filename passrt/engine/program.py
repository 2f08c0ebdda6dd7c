"""The program executor: a plan as one stateless function (image, refresh, state) -> (outputs, state).

:class:`SparseProgram` replays a :class:`~passrt.plan.Plan` in ordinary NCHW tensors
with the masks computed by standard tensor ops, so that ``torch.onnx.export`` turns it into
a graph of standard ONNX ops plus one ``PassSparseConv2d`` node per sparse conv. It follows
the streaming engine's rules exactly (same tile masks, refreshes, scene cuts and per-layer
crossover; a layer above its crossover computes every tile, which is what the engine's dense
path does), so its outputs equal the reference executor's frame after frame. It runs two
ways: with the node's reference (:func:`~passrt.engine.node.sparse_conv_node`), which is what
``passrt export`` traces, and with passrt's compiled op in place (:class:`ProgramExecutor`,
the ``op`` executor of :class:`~passrt.engine.SparseModel`).

- Convolutions whose fused epilogue the plugin can express (activation, residual add,
  activation) become ``PassSparseConv2d`` nodes; a conv with a fused 1x1 after it becomes
  two nodes with the same mask (the intermediate needs no state: the 1x1 reads only the
  tiles just recomputed, so its ``cache_in`` is a zero constant).
- Other spatial steps (pooling, upsampling, elementwise, concat, unusual epilogues) compute
  densely and keep the active tiles (``Where``): same values, still sparse in the state.
- Dense steps (heads' reshapes, global pooling ...) run as they are.

The masks come from the policy's mask source (:meth:`passrt.policies.Policy.mask_source`):
``regiondrop``'s frame difference or the ``pass`` gates, both standard ops.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from passrt import contract
from passrt.engine.faster import FasterWay, faster_way
from passrt.engine.node import NodeAttributes, dense_node, sparse_conv_node
from passrt.engine.reference import FrameRecord
from passrt.errors import PassrtError
from passrt.kernels import native
from passrt.kernels.native import row_matrix as _rows
from passrt.plan import Plan
from passrt.plan.epilogue import kernel_affine, kernel_epilogue
from passrt.plan.masks import cells_of
from passrt.plan.steps import (ConcatStep, ConvStep, DenseStep, InputStep, MoveStep, Pointwise, PointwiseStep,
                               PoolStep, Ref, ResampleStep, SpatialStep, TransposedConvStep)

class SparseProgram(nn.Module):
    """``forward(image, refresh, *states) -> (*outputs, active_fraction, *new_states)``."""

    def __init__(self, plan: Plan, policy, node=sparse_conv_node, eager: bool = False):
        """``node``: how a PassSparseConv2d node runs (default: the reference, which exports as the
        node); :class:`OpNode` runs passrt's compiled op in place instead (the op executor). ``eager``:
        the program runs, never traced (the op executor), so the mask source may run its rule in
        native kernels and a per-channel affine step (an input normalisation) may go to the node's
        ``affine`` on the active tiles instead of a dense op and a Where."""
        super().__init__()
        self.node, self.eager = node, eager
        self._scratch: dict[str, torch.Tensor] = {}
        self.plan, self.policy = plan, policy
        self.spatial = [s for s in plan.steps if isinstance(s, SpatialStep)]
        macs = torch.tensor([float(s.macs_per_cell) for s in self.spatial], dtype=torch.float64)
        cells = torch.tensor([float(s.shape[1] * s.shape[2]) for s in self.spatial], dtype=torch.float64)
        macs_dense = float((macs * cells).sum())
        self._mac_weights = (macs / macs_dense).tolist()
        self.macs_dense = macs_dense
        self.masks = policy.mask_source(plan)
        self.state_keys = self.masks.state_keys + [s.name for s in self.spatial]
        self.state_shapes = self.masks.state_shapes + [(1, *s.shape) for s in self.spatial]
        self.plugin_layers: list[str] = []  # labels of convs exported as plugin nodes
        # Labels of convs computed densely + Where: epilogues the plugin cannot express, and every
        # transposed conv (the plugin and the op have no transposed kernel yet).
        self.fallback_layers: list[str] = []
        self._convs: dict[str, list] = {}
        self._affines: dict[str, tuple] = {}  # step name -> (input name, scale, shift), eager only
        if eager and hasattr(node, "affine"):
            shapes = {s.name: tuple(s.shape) for s in plan.steps if isinstance(s, (SpatialStep, InputStep))}
            for step in self.spatial:
                found = kernel_affine(step.op, step.shape[0]) if isinstance(step, PointwiseStep) else None
                if found is not None and found[0] in shapes and shapes[found[0]] == tuple(step.shape):
                    self._affines[step.name] = found
        for step in self.spatial:
            if isinstance(step, ConvStep):
                self._convs[step.name] = self._conv_nodes(step)
            elif isinstance(step, TransposedConvStep):
                self.fallback_layers.append(step.label)

    # ---- construction ---------------------------------------------------------------
    def _conv_nodes(self, step: ConvStep):
        """[(conv, NodeAttributes | None, residual name, weight, bias)] for the step's one or two convs."""
        nodes = []
        for conv in [step] + ([step.follow] if step.follow is not None else []):
            epi = kernel_epilogue(conv.epilogue, step.name)
            # Buffers, so that they export as named initializers.
            key = f"{conv.name}_{len(nodes)}"
            self.register_buffer(f"{key}_weight", conv.weight.detach().contiguous(), persistent=True)
            self.register_buffer(f"{key}_bias", conv.bias.detach() if conv.bias is not None
                                 else torch.zeros(conv.weight.shape[0]), persistent=True)
            weight, bias = f"{key}_weight", f"{key}_bias"
            attrs = None
            if epi is not None:
                top, bottom, left, right = conv.win.pads
                attrs = NodeAttributes(tuple(conv.win.kernel), tuple(conv.win.stride), tuple(conv.win.dilation),
                                       (top, left, bottom, right), conv.groups, step.tile, epi[0], epi[1], epi[3])
            nodes.append((conv, attrs, epi[2] if epi else None, weight, bias))
        if all(n[1] is not None for n in nodes):
            self.plugin_layers.append(step.label)
        else:
            self.fallback_layers.append(step.label)
        return nodes

    def initial_states(self, device=None, dtype=torch.float32) -> list[torch.Tensor]:
        return [torch.zeros(shape, device=device, dtype=dtype) for shape in self.state_shapes]

    # ---- the function -----------------------------------------------------------------
    def forward(self, image: torch.Tensor, refresh: torch.Tensor, *states: torch.Tensor):
        n_mask = len(self.masks.state_keys)
        caches = dict(zip(self.state_keys[n_mask:], states[n_mask:]))
        if self.eager and self.masks.in_place_ok(image):  # the rule in native kernels, states in place
            mask_states = self.masks.begin(image, refresh, states[:n_mask], True)
        else:
            mask_states = self.masks.begin(image, refresh, states[:n_mask])
        values = {self.plan.input_name: image}
        new_states, active = [], torch.zeros(1, device=image.device)
        for step in self.plan.steps[1:]:
            if isinstance(step, DenseStep):
                values[step.name] = step.call(values.__getitem__)
                continue
            mask = self.masks.step_mask(step, values.__getitem__)
            cache = caches[step.name]
            if isinstance(step, ConvStep):
                out = self._conv(step, values, mask, cache, refresh.reshape(1) * 0)
            elif step.name in self._affines:
                src, scale, shift = self._affines[step.name]
                out = self.node.affine(values[src], mask, cache, scale, shift, step.tile)
            else:
                dense = dense_value(step, values)
                out = torch.where(cells_of(mask, step.tile, step.shape[1], step.shape[2]) > 0.5, dense, cache)
            values[step.name] = out
            new_states.append(out)
            weight = self._mac_weights[self.spatial.index(step)]
            computed = torch.clamp(mask.sum() * float(step.tile ** 2), max=float(step.shape[1] * step.shape[2]))
            active = active + computed.reshape(1) * weight
        active = active + self.masks.overhead_macs() / self.macs_dense
        outputs = [values[a.name] if isinstance(a, Ref) else a for a in _flatten(self.plan.outputs)]
        return (*outputs, active, *mask_states, *self.masks.end(), *new_states)

    def _conv(self, step: ConvStep, values, mask, cache, zero):
        x = values[step.srcs[0]]
        nodes = self._convs[step.name]
        if len(nodes) == 2 and hasattr(self.node, "pair") and all(n[1] is not None for n in nodes):
            out = self.node.pair(x, mask, cache, [(self._buffers[w], self._buffers[b],
                                                   values[r] if r is not None else None, attrs)
                                                  for _, attrs, r, w, b in nodes])
            if out is not None:
                return out
        for i, (conv, attrs, residual, weight, bias) in enumerate(nodes):
            weight, bias = self._buffers[weight], self._buffers[bias]
            last = i == len(nodes) - 1
            if attrs is None:  # not expressible by the plugin: dense conv + epilogue, keep active tiles
                x = _epilogue(conv, step.name, conv.dense_conv(x, weight, bias), values)
                if last:
                    x = torch.where(cells_of(mask, step.tile, step.shape[1], step.shape[2]) > 0.5, x, cache)
                continue
            cache_in = cache if last else self._intermediate(conv, weight.shape[0], zero)
            res = values[residual] if residual is not None else None
            x = self.node(x, mask, cache_in, weight, bias, res, attrs)
        return x

    def _intermediate(self, conv: ConvStep, channels: int, zero):
        """The cache of a fused pair's first conv. It needs no state: the 1x1 reads only the tiles
        just recomputed. Exported: zeros expanded from a runtime scalar (a constant would be stored
        in the file); in place (op executor): a scratch buffer."""
        shape = (1, channels, *conv.win.out_size)
        if self.node is sparse_conv_node:
            return zero.reshape(1, 1, 1, 1).expand(shape)
        if conv.name not in self._scratch:
            self._scratch[conv.name] = _layout(torch.zeros(shape, device=zero.device, dtype=zero.dtype))
        return self._scratch[conv.name]


def dense_value(step: SpatialStep, values):
    """A non-conv spatial step computed on whole NCHW values (``values``: name -> NCHW tensor); also the
    device executor's path for the steps its tile kernels do not run (engine/native_cuda.py)."""
    if isinstance(step, PointwiseStep):
        return _apply(step.op, values)
    if isinstance(step, MoveStep):
        return step.fn(values[step.srcs[0]])
    if isinstance(step, TransposedConvStep):
        return _epilogue(step, step.name, step.dense_conv(values[step.srcs[0]]), values)
    if isinstance(step, ConcatStep):
        return torch.cat([values[s] for s in step.srcs], 1)
    if isinstance(step, PoolStep):
        return step.dense(values[step.srcs[0]])
    if isinstance(step, ResampleStep):
        x = values[step.srcs[0]]
        align = step.align_corners if step.mode == "bilinear" else None
        if step.scales[0] is not None:  # as PyTorch computed the source index: from the scale factor
            return F.interpolate(x, scale_factor=(1 / step.scales[0], 1 / step.scales[1]), mode=step.mode,
                                 align_corners=align)
        return F.interpolate(x, size=step.shape[1:], mode=step.mode, align_corners=align)
    raise PassrtError(f"cannot export layer '{step.label}' ({step.kind})")


def _apply(pw: Pointwise, values, running: Optional[str] = None, y=None):
    """``pw`` on whole values; ``running`` names the value ``y`` stands for (a conv's fresh output)."""
    args = [y if isinstance(a, Ref) and a.name == running else values[a.name] if isinstance(a, Ref) else a
            for a in pw.args]
    return pw.fn(*args, **{k: v for k, v in pw.kwargs.items() if k != "inplace"})


def _epilogue(conv: ConvStep, running: str, y, values):
    for pw in conv.epilogue:
        y = _apply(pw, values, running, y)
    return y


def _flatten(structure) -> list:
    out = []
    fx.node.map_aggregate(structure, lambda a: out.append(a) or a)
    return out


class OpNode:
    """A node run by passrt's compiled op, in place: ``cache`` becomes the output.

    On CPU, caches kept channels-last (NHWC in memory) run through ``passrt::conv_tiles``, the native
    executor's kernels (windows read straight from the cache, one GEMM, epilogue and write-back fused;
    the weights converted once per node), for ordinary and depthwise float32 convs; with every tile active,
    through PyTorch's conv instead where that measured faster for the node (as the native executor's dense
    steps choose). Anything else runs through ``passrt::sparse_conv2d``, whose CPU kernels are the CUDA
    kernels' plain NCHW twins."""

    def __init__(self):
        self._weights: dict[int, tuple] = {}  # id(weight) -> (weight, its layout for conv_tiles)
        self._dense_ways: dict[int, FasterWay] = {}  # id(weight) -> how the node runs when every tile is active

    def __call__(self, x, tile_mask, cache, weight, bias, residual, attrs: NodeAttributes) -> torch.Tensor:
        top, left, bottom, right = attrs.pads
        if native.row_matrices_ok(x, cache, residual) and native.supports(weight, attrs.group):
            return self._active_tiles(tile_mask, cache, id(weight),
                                      lambda: dense_node(x, weight, bias, residual, attrs),
                                      lambda tiles: self._tiles(x, tiles, cache, weight, bias, residual, attrs))
        from passrt.kernels.extension import sparse_conv2d_op

        out = cache if cache.is_contiguous() else cache.contiguous()  # the twins take NCHW
        sparse_conv2d_op(x, weight, bias, out, tile_mask[0, 0], stride=attrs.strides,
                         padding=(top, bottom, left, right), dilation=attrs.dilations, groups=attrs.group,
                         tile=attrs.tile, activation=contract.ACTIVATION_NAMES[attrs.activation], residual=residual,
                         act_alpha=attrs.activation_alpha,
                         post_activation=contract.ACTIVATION_NAMES[attrs.post_activation])
        return out if out is cache else cache.copy_(out)

    def pair(self, x, tile_mask, cache, convs: list) -> Optional[torch.Tensor]:
        """A conv and the 1x1 fused after it (``convs``: [(weight, bias, residual, attrs)] of each) as one
        ``passrt::conv_tiles`` call, the intermediate kept per tile, as the native executor runs such a step;
        two nodes wrote and re-read the whole intermediate (a 6x-expanded map in an inverted residual block).
        None where that call does not apply: then each node runs on its own."""
        (weight, bias, residual, attrs), (follow, follow_bias, follow_residual, follow_attrs) = convs
        if not (native.row_matrices_ok(x, cache, residual, follow_residual) and native.supports(weight, attrs.group)
                and follow_attrs.group == 1 and tuple(follow.shape[2:]) == (1, 1)
                and tuple(follow_attrs.strides) == (1, 1) and not any(follow_attrs.pads)):
            return None
        after = (self._follow_weight(follow), follow_bias, follow_residual, follow_attrs)
        return self._active_tiles(
            tile_mask, cache, id(weight),
            lambda: dense_node(dense_node(x, weight, bias, residual, attrs), follow, follow_bias, follow_residual,
                               follow_attrs),
            lambda tiles: self._tiles(x, tiles, cache, weight, bias, residual, attrs, after))

    def _active_tiles(self, tile_mask, cache, key, dense, sparse) -> torch.Tensor:
        """``cache`` with its active tiles recomputed: ``sparse(tile ids)`` writes them in place; with every tile
        active, PyTorch's conv (``dense()``, copied in) or the kernels, whichever measured faster for ``key``."""
        tiles = torch.nonzero(tile_mask.reshape(-1) > 0.5).reshape(-1)
        if tiles.numel() == 0:
            return cache
        if tiles.numel() < tile_mask.numel():
            return sparse(tiles)
        way = faster_way(self._dense_ways, key, ("torch", "tiles"))
        return way.run(lambda w: cache.copy_(dense()) if w == "torch" else sparse(tiles))

    def _tiles(self, x, tiles, cache, weight, bias, residual, attrs: NodeAttributes, after=None) -> torch.Tensor:
        """The listed tiles through ``passrt::conv_tiles``, in place in ``cache``; ``after``: a fused 1x1
        (its weight in the kernels' [C_mid, C_out] layout, bias, residual, attributes)."""
        top, left, _, _ = attrs.pads
        fw, fb, fr, fa = after if after is not None else (None, None, None, None)
        torch.ops.passrt.conv_tiles(
            _rows(x), self._kernel_weight(weight, attrs.group), bias, _rows(residual), tiles, _rows(cache),
            list(x.shape[2:]), list(cache.shape[2:]), list(attrs.kernel_shape), list(attrs.strides), [top, left],
            list(attrs.dilations), attrs.group, attrs.tile, attrs.activation, attrs.activation_alpha,
            attrs.post_activation, fw, fb, _rows(fr), fa.activation if fa else 0, fa.activation_alpha if fa else 0.01,
            fa.post_activation if fa else 0)
        return cache

    def affine(self, x, tile_mask, cache, scale, shift, tile: int) -> torch.Tensor:
        """``x * scale + shift`` (per channel) on the active tiles of ``cache``."""
        if not native.row_matrices_ok(x, cache):
            return torch.where(cells_of(tile_mask, tile, *cache.shape[2:]) > 0.5,
                               x * scale.to(x).reshape(1, -1, 1, 1) + shift.to(x).reshape(1, -1, 1, 1), cache)
        tiles = torch.nonzero(tile_mask.reshape(-1) > 0.5).reshape(-1)
        if tiles.numel():
            torch.ops.passrt.affine_tiles(_rows(x), scale, shift, tiles, _rows(cache), list(cache.shape[2:]), tile)
        return cache

    def _kernel_weight(self, weight: torch.Tensor, groups: int) -> torch.Tensor:
        return self._converted(weight, lambda: native.kernel_weight(weight, groups))

    def _follow_weight(self, weight: torch.Tensor) -> torch.Tensor:
        """A 1x1 conv's (C_out, C_mid, 1, 1) weight as the fused 1x1 of ``conv_tiles`` takes it: [C_mid, C_out]."""
        return self._converted(weight, lambda: weight.reshape(weight.shape[0], -1).t().contiguous())

    def _converted(self, weight: torch.Tensor, convert) -> torch.Tensor:
        entry = self._weights.get(id(weight))
        if entry is None or entry[0] is not weight:
            entry = self._weights[id(weight)] = (weight, convert())
        return entry[1]


def _layout(t: torch.Tensor) -> torch.Tensor:
    """Maps on CPU kept channels-last, the layout OpNode's fast path reads and writes in place."""
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 and t.device.type == "cpu" else t


class ProgramExecutor:
    """The ``op`` executor: the plan as a :class:`SparseProgram` with passrt's compiled op in place
    of each node (CPU or CUDA tensors), its state fed back by the contract's :class:`StateLoop`.
    Masks and convs stay on the input's device with no host synchronisation until the caller
    reads an output (the record's executed MACs read the active fraction)."""

    def __init__(self, plan: Plan, policy, device, dtype):
        self.plan = plan
        self.program = SparseProgram(plan, policy, node=OpNode(), eager=True).to(device, dtype)
        self.name = f"passrt op ({torch.device(device).type.upper()})"
        states = {contract.STATE_IN + k: _layout(t) for k, t in zip(self.program.state_keys,
                                                                    self.program.initial_states(device, dtype))}
        self.n_outputs = len(_flatten(plan.outputs))
        outputs = {f"{contract.OUTPUT}{i}": () for i in range(self.n_outputs)}
        outputs[contract.ACTIVE_FRACTION] = (1,)
        outputs.update({contract.state_output(k): tuple(v.shape) for k, v in states.items()})
        io = contract.GraphIO({contract.IMAGE: plan.input_shape, contract.REFRESH: (1,),
                               **{k: tuple(v.shape) for k, v in states.items()}}, outputs)
        self.output_names = list(outputs)
        self.loop = contract.StateLoop(io, states)
        self._flag = lambda v: torch.full((1,), v, device=device, dtype=dtype)  # noqa: E731

    def run(self, x: torch.Tensor, refresh: bool):
        self.loop.refresh = refresh
        feeds = self.loop.feeds(_layout(x), self._flag)
        result = self.program(*feeds.values())
        outputs, _ = self.loop.advance(dict(zip(self.output_names, result)))
        macs_dense = self.program.macs_dense
        record = FrameRecord(refresh, macs_dense, self.loop.active_fraction * macs_dense)
        flat = iter(o.clone() if isinstance(o, torch.Tensor) else o for o in outputs)  # caches stay private
        return fx.node.map_aggregate(self.plan.outputs, lambda a: next(flat)), record

    def tile_masks(self) -> dict:
        return {}
