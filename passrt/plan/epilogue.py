"""Which fused epilogues the native kernels compute themselves.

A conv step's epilogue is a list of elementwise ops on its running result (plan/steps.py). The
kernels (the CPU tile kernels, the CUDA kernels and the TensorRT plugin, which share
passrt_kernels.h) compute one shape of it: ``[activation] [+ residual] [activation]``, the
activations those of ``contract.ACTIVATION_CODES``. :func:`kernel_epilogue` recognises it; any
other epilogue stays with PyTorch (the reference executor, or a dense conv + ``Where`` in the
exported program).

A standalone pointwise step that is a per-channel affine map of one full-size value (an input
normalisation, ``x * 2 - 1``) is computed by the kernels too: :func:`kernel_affine`.
"""

from __future__ import annotations

import operator
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from passrt import contract
from passrt.plan.steps import Pointwise, Ref

# The activations the kernels' epilogue knows (contract.ACTIVATION_CODES), as PyTorch spells them.
_ACT_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Hardswish: "hardswish", nn.SiLU: "silu", nn.Sigmoid: "sigmoid",
                nn.LeakyReLU: "leaky_relu"}
_ACT_FUNCTIONS = {F.relu: "relu", torch.relu: "relu", F.relu6: "relu6", F.hardswish: "hardswish", F.silu: "silu",
                  F.sigmoid: "sigmoid", torch.sigmoid: "sigmoid", F.leaky_relu: "leaky_relu"}
_LEAKY = contract.ACTIVATION_CODES["leaky_relu"]


def _activation(pw: Pointwise, running: str) -> Optional[tuple[int, float]]:
    """(code, alpha) if ``pw`` is an activation of the running result the plugin knows."""
    if not pw.args or not isinstance(pw.args[0], Ref) or pw.args[0].name != running:
        return None
    kwargs = {k: v for k, v in pw.kwargs.items() if k != "inplace"}
    if isinstance(pw.fn, nn.Module) and type(pw.fn) in _ACT_MODULES and len(pw.args) == 1 and not kwargs:
        return contract.ACTIVATION_CODES[_ACT_MODULES[type(pw.fn)]], float(getattr(pw.fn, "negative_slope", 0.01))
    if pw.fn in _ACT_FUNCTIONS:
        extra = list(pw.args[1:]) + list(kwargs.values())
        if pw.fn is F.leaky_relu and len(extra) <= 1 and all(isinstance(v, (int, float)) for v in extra):
            return _LEAKY, float(extra[0]) if extra else 0.01
        if not extra:
            return contract.ACTIVATION_CODES[_ACT_FUNCTIONS[pw.fn]], 0.01
    return None


def _residual(pw: Pointwise, running: str) -> Optional[str]:
    """The other operand's name if ``pw`` is ``running + other`` with a full-size other."""
    if pw.fn not in (operator.add, torch.add) or len(pw.args) != 2 or pw.kwargs:
        return None
    a, b = pw.args
    if not (isinstance(a, Ref) and isinstance(b, Ref)) or a.broadcast or b.broadcast:
        return None
    if a.name == running and b.name != running:
        return b.name
    if b.name == running and a.name != running:
        return a.name
    return None


def kernel_epilogue(ops: list[Pointwise], running: str):
    """(activation, alpha, residual name, post_activation) for ``[act] [+ residual] [act]``, or None."""
    act, alpha, residual, post = 0, 0.01, None, 0
    stage = 0  # 0: nothing yet, 1: after act, 2: after residual, 3: after post act
    for pw in ops:
        a = _activation(pw, running)
        if a is not None and stage in (0, 2):
            if stage == 0:
                act, alpha, stage = a[0], a[1], 1
            else:
                if a[0] == _LEAKY and act == _LEAKY and a[1] != alpha:
                    return None  # one alpha for both
                post, alpha, stage = a[0], a[1], 3
            continue
        r = _residual(pw, running)
        if r is not None and stage in (0, 1):
            residual, stage = r, 2
            continue
        return None
    return act, alpha, residual, post


_SCALE, _SHIFT = (operator.mul, torch.mul), (operator.add, torch.add, operator.sub, torch.sub)


def _per_channel(c, channels: int) -> Optional[torch.Tensor]:
    """A constant as [channels] float32 values, if it is a number or a (1|C)-element per-channel tensor."""
    if isinstance(c, bool) or not isinstance(c, (int, float, torch.Tensor)):
        return None
    t = torch.as_tensor(c, dtype=torch.float32).detach()
    if t.numel() == 1 and t.dim() <= 4:
        return t.reshape(1).expand(channels).contiguous()
    if t.numel() == channels and t.dim() >= 3 and t.shape[-3:] == (channels, 1, 1) and t.numel() == t.shape[-3]:
        return t.reshape(channels).contiguous()
    return None


def kernel_affine(pw: Pointwise, channels: int) -> Optional[tuple[str, torch.Tensor, torch.Tensor]]:
    """(input name, scale [C], shift [C]) if ``pw`` is ``x * c``, ``c * x``, ``x + c``, ``c + x``, ``x - c`` or
    ``c - x`` of one full-size value ``x`` and a number or per-channel constant ``c``, else None. The kernel's
    ``x * scale + shift`` gives bit for bit what the op gives: one of the two is the identity (1 or 0)."""
    if len(pw.args) != 2 or pw.kwargs or pw.fn not in _SCALE + _SHIFT:
        return None
    refs = [a for a in pw.args if isinstance(a, Ref)]
    if len(refs) != 1 or refs[0].broadcast:
        return None
    x_first = isinstance(pw.args[0], Ref)
    c = _per_channel(pw.args[1] if x_first else pw.args[0], channels)
    if c is None:
        return None
    one, zero = torch.ones(channels), torch.zeros(channels)
    if pw.fn in _SCALE:
        return refs[0].name, c, zero
    if pw.fn in (operator.add, torch.add):
        return refs[0].name, one, c
    return (refs[0].name, one, -c) if x_first else (refs[0].name, -one, c)
