"""Stage 1's self-supervision: triplets built from a gate's mask, judged by the frozen backbone.

For every gated conv, with its input X^t now and X^{t-d} before, and the gate's mask M (1 = skip):

    anchor    X^t
    positive  X^t with the skip patches (M = 1) replaced by X^{t-d}   (what skipping would feed on)
    negative  X^t with the keep patches (M = 0) replaced by X^{t-d}

All gated convs are mixed in the same forward pass (upstream mixing reaches downstream
layers, as skipping does at inference). The *heatmaps* H_a, H_p, H_n are the backbone's
outputs (every output tensor, each divided by the anchor's RMS, flattened, over sqrt(D)),
so distances are relative RMS errors of the model's output. The loss:

    TripletMarginLoss(H_a, H_p, H_n; margin)  +  budget_weight * mean_g (mean skip prob_g - target_skip)^2

The triplet term alone is smallest when nothing is skipped (positive = anchor), so the second
term asks every gate for ``target_skip`` of its patches; the triplet term then decides
*which* patches: those whose replacement moves the output least.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from passrt.plan.masks import cells_of


@contextmanager
def tapped(model: nn.Module, labels: list[str], fn):
    """While inside, ``fn(label, x) -> x'`` sees (and may replace) the input of each gated conv."""
    handles, root = [], getattr(model, "module", model)  # under DistributedDataParallel: the wrapped model
    for label in labels:
        def hook(module, args, label=label):
            return (fn(label, args[0]), *args[1:])
        handles.append(root.get_submodule(label).register_forward_pre_hook(hook))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def run_recording(model: nn.Module, x: torch.Tensor, labels: list[str]):
    """(outputs, {label: the gated conv's input}) of a plain forward pass."""
    seen = {}

    def record(label, value):
        seen[label] = value
        return value

    with tapped(model, labels, record):
        outputs = model(x)
    return outputs, seen


def run_mixed(model: nn.Module, x: torch.Tensor, before: dict, masks: dict, patches: dict):
    """Forward pass where each gated conv's input takes ``before[label]`` where ``masks[label]`` is 1."""
    def mix(label, value):
        m = cells_of(masks[label], patches[label], value.shape[2], value.shape[3])
        return value + m * (before[label] - value)

    with tapped(model, list(masks), mix):
        return model(x)


def flat_outputs(outputs) -> list[torch.Tensor]:
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    return [t for o in outputs for t in flat_outputs(o)]


def heatmap(outputs, scales: list[torch.Tensor]) -> torch.Tensor:
    """(1, D) embedding of a forward pass: each output over its anchor RMS, flattened, over sqrt(D)."""
    parts = [(o / s).reshape(o.shape[0], -1) for o, s in zip(flat_outputs(outputs), scales)]
    h = torch.cat(parts, 1)
    return h / h.shape[1] ** 0.5


def rms_scales(outputs) -> list[torch.Tensor]:
    return [o.detach().pow(2).mean().sqrt().clamp_min(1e-6) for o in flat_outputs(outputs)]


def budget_term(probabilities: dict, target: float) -> torch.Tensor:
    """mean over gates of (mean skip probability - target)^2."""
    terms = [(p.mean() - target) ** 2 for p in probabilities.values()]
    return torch.stack(terms).mean()
