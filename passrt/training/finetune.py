"""Stage 2 (optional): fine-tune the backbone under its frozen gates.

The backbone learns to work with the inputs skipping gives it: each step runs it on the
*positive* sample (every gated conv's skip patches replaced by the earlier frame's input, the
gates deciding deterministically, as at inference) and updates it with

- a task loss you supply, ``loss(outputs, teacher_outputs, frame) -> scalar tensor``, where
  ``frame`` is ``{"clip": uri, "index": frame number in the file, "gap": d}`` so a labelled
  dataset can look up its labels (CLI: ``--loss package.module:function``); or
- with no labels, distillation: the mean squared error between the fine-tuned model's outputs
  and the dense original's on the same frame, each output over the original's RMS.

The result is a gates file that also carries the fine-tuned backbone weights; ``sparsify``
and the CLI run that backbone (on a copy of the model) when given such a file.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Callable, Optional

import torch
from tqdm import tqdm

from passrt.errors import PassrtError
from passrt.training.options import FinetuneOptions
from passrt.training import triplet
from passrt.policies.gateset import load
from passrt.training.train import Distributed, prepare_frames

LossFn = Callable[[object, object, dict], torch.Tensor]


def distillation_loss(outputs, teacher_outputs, frame: dict) -> torch.Tensor:
    """Mean squared error to the dense model's outputs, each output scaled by its RMS."""
    terms = [((o - t) / s).pow(2).mean() for o, t, s in zip(triplet.flat_outputs(outputs),
                                                              triplet.flat_outputs(teacher_outputs),
                                                              triplet.rms_scales(teacher_outputs))]
    return torch.stack(terms).sum()


def import_loss(spec: str) -> LossFn:
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise PassrtError(f"--loss must be 'package.module:function', got '{spec}'")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise PassrtError(f"--loss {spec}: cannot import it ({e})") from None
    if not callable(fn):
        raise PassrtError(f"--loss {spec} is not a function")
    return fn


def finetune(opts: FinetuneOptions, progress: bool = True, loss_fn: Optional[LossFn] = None):
    """Fine-tune the backbone of ``opts.gates``'s model; write gates + backbone to ``opts.out``."""
    from passrt.models import load_model

    gates = load(opts.gates)
    if gates.backbone is not None:
        raise PassrtError(f"{opts.gates} already carries a fine-tuned backbone; fine-tune from the pre-trained gates")
    out = Path(opts.out)
    if not out.parent.is_dir():
        raise PassrtError(f"cannot write {out}: directory {out.parent} does not exist")
    if opts.steps < 1:
        raise PassrtError("--steps must be at least 1")
    loss_fn = loss_fn or (import_loss(opts.loss) if opts.loss else distillation_loss)
    spec = load_model(gates.model)
    dist = Distributed(opts.device)
    torch.manual_seed(opts.seed)
    pairs, size = prepare_frames(opts, spec.preprocess)

    teacher = spec.module.eval().requires_grad_(False).to(dist.device)
    student = copy.deepcopy(teacher).requires_grad_(True)
    gates.to(dist.device).eval().requires_grad_(False)
    trainer = dist.wrap(student)
    labels = gates.labels()
    patches = {label: gates.sites[label].patch for label in labels}
    optimizer = torch.optim.Adam(student.parameters(), lr=opts.lr)
    generator = torch.Generator().manual_seed(opts.seed * 1000 + dist.rank)
    history = []
    bar = tqdm(total=opts.steps, desc="finetune", unit="step", disable=not (progress and dist.main), dynamic_ncols=True)
    for step in range(opts.steps):
        x_t, x_prev, frame = pairs.sample(generator)
        x_t, x_prev = x_t.to(dist.device), x_prev.to(dist.device)
        with torch.no_grad():
            target = teacher(x_t)
            _, before = triplet.run_recording(student, x_prev, labels)
            _, now = triplet.run_recording(student, x_t, labels)
            masks = {label: gates.gate(label).decide(gates.gate(label)(now[label], before[label]), opts.skip_above)
                     for label in labels}
        outputs = triplet.run_mixed(trainer, x_t, before, masks, patches)
        loss = loss_fn(outputs, target, frame)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.append({"step": step + 1, "loss": loss.item()})
        bar.set_postfix(loss=f"{loss.item():.5f}")
        bar.update()
    bar.close()
    dist.close()
    if dist.main:
        gates.backbone = {k: v.detach().cpu() for k, v in student.state_dict().items()}
        gates.info = {**gates.info, "finetune": {"steps": opts.steps, "lr": opts.lr, "input_size": list(size),
                                                 "clips": list(opts.clips), "loss": opts.loss or "distillation",
                                                 "history": history}}
        gates.cpu().save(out)
    return gates
