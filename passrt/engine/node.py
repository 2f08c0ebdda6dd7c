"""What one ``PassSparseConv2d`` node computes, in PyTorch, and how it exports.

``pass_sparse_conv2d`` is the reference the exported graph is checked with (the way
Polygraphy's ``pluginref`` backend stands in for a plugin): the convolution of the whole
input with the node's geometry, the fused epilogue ``post_act(act(conv + bias) + residual)``,
kept on the active tiles; ``cache_in`` everywhere else. The plugin computes only the active
tiles; the values are the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from passrt import contract
from passrt.plan.masks import cells_of


@dataclass(frozen=True)
class NodeAttributes:
    """The node's attributes (names and order as in the plugin creator)."""

    kernel_shape: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    dilations: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right (ONNX order)
    group: int = 1
    tile: int = 1
    activation: int = 0
    activation_alpha: float = 0.01
    post_activation: int = 0

    def onnx_kwargs(self) -> dict:
        """Keyword arguments of ``g.op`` (TorchScript exporter: suffix _i ints, _f floats, _s strings)."""
        out = {"plugin_version_s": contract.PLUGIN_VERSION, "plugin_namespace_s": contract.PLUGIN_NAMESPACE}
        for name in contract.ATTRIBUTES:
            value = getattr(self, name)
            out[name + ("_f" if isinstance(value, float) else "_i")] = list(value) if isinstance(value, tuple) else value
        return out


# What each activation code of the contract computes (alpha: leaky_relu's slope).
_ACTIVATIONS = {None: lambda y, alpha: y, "relu": lambda y, alpha: F.relu(y), "relu6": lambda y, alpha: F.relu6(y),
                "hardswish": lambda y, alpha: F.hardswish(y), "silu": lambda y, alpha: F.silu(y),
                "sigmoid": lambda y, alpha: torch.sigmoid(y), "leaky_relu": F.leaky_relu}
assert set(_ACTIVATIONS) == set(contract.ACTIVATION_CODES)


def activate(y: torch.Tensor, code: int, alpha: float) -> torch.Tensor:
    if code not in contract.ACTIVATION_NAMES:
        raise ValueError(f"unknown activation code {code}")
    return _ACTIVATIONS[contract.ACTIVATION_NAMES[code]](y, alpha)


def dense_node(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, residual: Optional[torch.Tensor],
               attrs: NodeAttributes) -> torch.Tensor:
    """The node's values at every cell: ``post_act(act(conv + bias) + residual)``."""
    top, left, bottom, right = attrs.pads
    if (top, left) == (bottom, right):  # symmetric: the conv pads (no padded copy of the input)
        y = F.conv2d(x, weight, bias, attrs.strides, (top, left), attrs.dilations, attrs.group)
    else:
        x = F.pad(x, (left, right, top, bottom))
        y = F.conv2d(x, weight, bias, attrs.strides, 0, attrs.dilations, attrs.group)
    y = activate(y, attrs.activation, attrs.activation_alpha)
    if residual is not None:
        y = y + residual
    return activate(y, attrs.post_activation, attrs.activation_alpha)


def pass_sparse_conv2d(x: torch.Tensor, tile_mask: torch.Tensor, cache_in: torch.Tensor, weight: torch.Tensor,
                       bias: torch.Tensor, residual: Optional[torch.Tensor], attrs: NodeAttributes) -> torch.Tensor:
    y = dense_node(x, weight, bias, residual, attrs)
    if tuple(y.shape) != tuple(cache_in.shape):
        raise ValueError(f"{contract.PLUGIN_NAME}: the conv gives {tuple(y.shape)}, cache_in is {tuple(cache_in.shape)}")
    active = cells_of(tile_mask, attrs.tile, y.shape[2], y.shape[3]) > 0.5
    return torch.where(active, y, cache_in)


# Traced as one op of our own (a custom torch op, so the TorchScript exporter keeps it whole) and
# exported as one PassSparseConv2d node by the symbolic registered below.
@torch.library.custom_op("passrt_export::pass_sparse_conv2d", mutates_args=())
def _traced_node(x: torch.Tensor, tile_mask: torch.Tensor, cache_in: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor, residual: Optional[torch.Tensor], kernel_shape: list[int], strides: list[int],
                 dilations: list[int], pads: list[int], group: int, tile: int, activation: int,
                 activation_alpha: float, post_activation: int) -> torch.Tensor:
    attrs = NodeAttributes(tuple(kernel_shape), tuple(strides), tuple(dilations), tuple(pads), group, tile,
                           activation, activation_alpha, post_activation)
    return pass_sparse_conv2d(x, tile_mask, cache_in, weight, bias, residual, attrs)


@_traced_node.register_fake
def _(x, tile_mask, cache_in, *rest):
    return torch.empty_like(cache_in)


def sparse_conv_node(x, tile_mask, cache_in, weight, bias, residual, attrs: NodeAttributes) -> torch.Tensor:
    """The node in a program: the reference when run, one PassSparseConv2d node when exported."""
    return _traced_node(x, tile_mask, cache_in, weight, bias, residual, list(attrs.kernel_shape),
                        list(attrs.strides), list(attrs.dilations), list(attrs.pads), attrs.group, attrs.tile,
                        attrs.activation, attrs.activation_alpha, attrs.post_activation)


def _symbolic(g, x, tile_mask, cache_in, weight, bias, residual, kernel_shape, strides, dilations, pads, group,
              tile, activation, activation_alpha, post_activation):
    from torch.onnx import symbolic_helper as sh

    attrs = NodeAttributes(*(tuple(sh._parse_arg(v, "is")) for v in (kernel_shape, strides, dilations, pads)),
                           *(sh._parse_arg(v, "i") for v in (group, tile, activation)),
                           sh._parse_arg(activation_alpha, "f"), sh._parse_arg(post_activation, "i"))
    inputs = [x, tile_mask, cache_in, weight, bias]
    if not sh._is_none(residual):
        inputs.append(residual)  # omitted, not empty, when absent (plugins/tensorrt/README.md)
    out = g.op(f"{contract.DOMAIN}::{contract.PLUGIN_NAME}", *inputs, **attrs.onnx_kwargs())
    out.setType(cache_in.type())
    return out


torch.onnx.register_custom_op_symbolic("passrt_export::pass_sparse_conv2d", _symbolic, 9)
