"""Stage 1: task-independent pre-training of the gates on unlabeled clips (backbone frozen).

One step: sample (x_t, x_{t-d}); record every gated conv's input for both frames with the
frozen backbone; each gate samples a skip mask from (X^t, X^{t-d}); the backbone runs twice
more, on the positive and the negative mixes (:mod:`passrt.training.triplet`); the triplet and
budget terms update the gates only.

Reproducible (fixed seeds; the sampler's state is checkpointed), resumable (``resume=True``
continues from the checkpoint at ``out``), CPU by default and CUDA when present, and
data-parallel under ``torchrun`` (each process samples its own pairs; DistributedDataParallel
averages the gates' gradients; rank 0 writes the checkpoints).
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import torch
from torch import nn
from tqdm import tqdm

from passrt.errors import PassrtError
from passrt.training.options import TILES, TrainOptions, plain as _plain
from passrt.training import triplet
from passrt.training.data import ClipSpec, FramePairs, read_clip
from passrt.policies.gateset import GateSet, read_checkpoint



class Distributed:
    """torchrun's environment, or a single process."""

    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda":
            if not torch.cuda.is_available():
                raise PassrtError("--device cuda: this PyTorch sees no CUDA GPU (torch.cuda.is_available() is False)")
            torch.cuda.set_device(local)
            self.device = torch.device("cuda", local)
        else:
            self.device = torch.device("cpu")
        if self.world > 1 and not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: nn.Module) -> nn.Module:
        if self.world == 1:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)

    def close(self) -> None:
        if self.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def plan_steps(module: nn.Module, example: torch.Tensor, tiles: dict = TILES):
    """The engine's plan for ``module`` at ``example``'s size: where gates can sit and their patches."""
    from passrt.plan import build_plan, trace
    from passrt.policies import Policy

    return build_plan(trace(module), example, Policy(**tiles).tile_for).steps


def prepare_frames(opts, preprocess) -> tuple[FramePairs, tuple[int, int]]:
    """Frame pairs from ``opts.clips`` (all at ``opts.input_size``, default the first clip's size)."""
    specs = [ClipSpec.parse(c) for c in opts.clips]
    if not specs:
        raise PassrtError("give at least one clip to train on (--clips)")
    size = tuple(opts.input_size) if opts.input_size else None
    clips = []
    for spec in specs:
        frames = read_clip(spec, size, opts.max_frames)
        size = size or frames[0].shape[:2]
        clips.append(frames)
    return FramePairs(clips, preprocess, opts.max_gap, specs), size


def train_gates(opts: TrainOptions, resume: bool = False, progress: bool = True,
                model: Optional[nn.Module] = None, preprocess=None):
    """Train gates per ``opts`` and write them to ``opts.out``; ``model``/``preprocess`` default
    to the named model's (pass them to train gates for your own CNN). Returns a GateSet (``design="paper"``)
    or a CommonGate (``design="common"``, :mod:`passrt.training.common`)."""
    from passrt.models import load_model

    if model is None or preprocess is None:
        spec = load_model(opts.model)
        model, preprocess = model or spec.module, preprocess or spec.preprocess
    for name, lo in (("steps", 0 if opts.design == "common" else 1), ("checkpoint_every", 1)):
        if getattr(opts, name) < lo:
            raise PassrtError(f"--{name.replace('_', '-')} must be at least {lo}")
    if not 0.0 <= opts.target_skip <= 1.0:
        raise PassrtError(f"--target-skip must be in [0, 1], got {opts.target_skip}")
    out = Path(opts.out)
    if not out.parent.is_dir():
        raise PassrtError(f"cannot write {out}: directory {out.parent} does not exist")

    dist = Distributed(opts.device)
    torch.manual_seed(opts.seed)
    pairs, size = prepare_frames(opts, preprocess)
    if opts.design == "common":
        from passrt.training.common import train_common

        if dist.world > 1:
            raise PassrtError("the common design trains in one process (one small gate): run it without torchrun")
        if opts.layers is not None:
            raise PassrtError("--layers applies to --design paper (the common design has one gate, at the input)")
        for name in ("warm_steps", "cache_frames"):
            if getattr(opts, name) < (0 if name == "warm_steps" else 1):
                raise PassrtError(f"--{name.replace('_', '-')} must be at least {0 if name == 'warm_steps' else 1}")
        if not 0.0 <= opts.reduce_keep < 1.0:
            raise PassrtError(f"--reduce-keep must be in [0, 1), got {opts.reduce_keep}")
        example = preprocess(pairs.clips[0][0])
        steps = plan_steps(model.cpu(), example)
        return train_common(opts, model, preprocess, pairs.clips, pairs.specs, size, steps, dist.device,
                            resume=resume, progress=progress and dist.main)
    model = model.eval().requires_grad_(False).to(dist.device)
    example = preprocess(pairs.clips[0][0])
    gates = GateSet.for_steps(opts.model, plan_steps(model.cpu(), example), opts.gate, TILES, opts.layers)
    model.to(dist.device)
    optimizer = torch.optim.AdamW(gates.parameters(), lr=opts.lr)
    generator = torch.Generator().manual_seed(opts.seed * 1000 + dist.rank)
    start, history = 0, []
    if resume and out.is_file():
        start, history = _restore(out, gates, optimizer, generator, opts)
    gates.to(dist.device).train()
    trainer = dist.wrap(gates)
    labels = gates.labels()
    patches = {label: gates.sites[label].patch for label in labels}
    loss_fn = nn.TripletMarginLoss(margin=opts.margin)

    bar = tqdm(total=opts.steps, initial=start, desc="train-gates", unit="step", disable=not (progress and dist.main),
               dynamic_ncols=True)
    for step in range(start, opts.steps):
        x_t, x_prev, _ = pairs.sample(generator)
        x_t, x_prev = x_t.to(dist.device), x_prev.to(dist.device)
        with torch.no_grad():
            _, before = triplet.run_recording(model, x_prev, labels)
            anchor, now = triplet.run_recording(model, x_t, labels)
        scales = triplet.rms_scales(anchor)
        logits = trainer({label: (now[label], before[label]) for label in labels})
        masks, probs = {}, {}
        for label in labels:
            masks[label], probs[label] = gates.gate(label).sample(logits[label])
        h_a = triplet.heatmap(anchor, scales)
        h_p = triplet.heatmap(triplet.run_mixed(model, x_t, before, masks, patches), scales)
        h_n = triplet.heatmap(triplet.run_mixed(model, x_t, before, {k: 1 - m for k, m in masks.items()}, patches),
                              scales)
        trip = loss_fn(h_a, h_p, h_n)
        budget = triplet.budget_term(probs, opts.target_skip)
        loss = trip + opts.budget_weight * budget
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        skip = float(torch.stack([m.detach().mean() for m in masks.values()]).mean())
        record = {"step": step + 1, "loss": loss.item(), "triplet": trip.item(), "skip": skip,
                  "d_ap": (h_a - h_p).norm().item(), "d_an": (h_a - h_n).norm().item()}
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}", triplet=f"{record['triplet']:.4f}", skip=f"{skip:.2f}")
        bar.update()
        if dist.main and ((step + 1) % opts.checkpoint_every == 0 or step + 1 == opts.steps):
            _save(out, gates, optimizer, generator, opts, step + 1, history, size)
    bar.close()
    dist.close()
    return gates.cpu().eval()


def _save(out, gates, optimizer, generator, opts, step, history, size) -> None:
    gates.info = {"stage": "pretrain", "steps": step, "input_size": list(size), "history": history,
                  "options": _plain(asdict(opts))}
    gates.save(out, train_state={"step": step, "optimizer": optimizer.state_dict(),
                                 "generator": generator.get_state(), "rng": torch.get_rng_state()})


def _restore(out, gates, optimizer, generator, opts) -> tuple[int, list]:
    ckpt = read_checkpoint(out)
    state = ckpt.get("train_state")
    if state is None:
        raise PassrtError(f"{out} has no training state to resume from (written by `passrt finetune`?)")
    if ckpt["model"] != opts.model or [s["label"] for s in ckpt["sites"]] != gates.labels():
        raise PassrtError(f"{out} holds gates for other layers or another model: resume with the same --model and "
                          "--layers, or write to a new --out")
    gates.load_state_dict(ckpt["state_dict"])
    optimizer.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["rng"])
    return state["step"], list(ckpt.get("info", {}).get("history", []))
