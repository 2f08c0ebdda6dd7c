"""Training the common-mask gate (``passrt train-gates``, the default ``--design common``).

Two stages, both with the backbone frozen and no labels:

1. **Warm start: imitate RegionDrop.** Each clip is replayed through RegionDrop's noise-adaptive
   rule (the reference moving only in changed blocks, the noise level learned online), and the
   gate learns, with a class-balanced binary cross-entropy, to give the rule's decision from its
   block features. The replay costs no backbone pass, so this takes seconds; the IoU of the
   gate's kept blocks with the rule's on the training frames is recorded (``info["warm"]``).
2. **Triplet + budget, where inference runs.** A pair (x_t, x_{t-d}); the caches are the
   backbone's dense outputs on x_{t-d} (what the engine holds after a refresh there), computed
   once per reference frame and kept (float16) for ``cache_frames`` frames; the anchor is the
   dense output on x_t (kept too). The gate samples its skip mask M on the blocks, the kept
   blocks are dilated by ``margin`` as at inference, and

       positive  the engine's output when it recomputes the kept tiles and reuses the rest
                 (:class:`passrt.training.reuse.ReuseRunner`: following layers' halos included),
       negative  the same with kept and skipped blocks exchanged (no gradient),

   loss = TripletMarginLoss(H_a, H_p, H_n) + budget_weight * ((mean keep prob - k*) / k*)^2, with
   k* = (1 - reduce_keep) x the share of blocks the rule keeps on this pair: the budget asks
   for fewer blocks than the rule, the triplet term picks which (those whose reuse moves the
   outputs least).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from passrt.errors import PassrtError
from passrt.plan import masks
from passrt.policies import noise
from passrt.policies.common_gate import CommonGate, CommonGateConfig
from passrt.training import triplet
from passrt.training.options import TILES, plain as _plain
from passrt.training.reuse import ReuseRunner

MARGIN = 1  # blocks: the policy's default dilation of the kept blocks (RegionDrop's)
FLOOR, CEILING = 1 / 255, 0.1  # RegionDrop's noise_floor and max_threshold defaults


def replay_rule(frames: list[torch.Tensor], cfg: CommonGateConfig):
    """RegionDrop's noise-adaptive rule over one clip (its default parameters, ``cfg``'s block, min_pixels
    and noise_multiple): per frame after the first, the reference it compared with, tau and the rule's
    changed blocks (1, 1, Hb, Wb). The same arithmetic as :class:`passrt.policies.regiondrop.RegionDropMasks`
    (tensor path); a scene cut refreshes the reference. A generator: one frame's reference at a time."""
    ref = prev = prev2 = None
    level = torch.zeros(1)
    for i, x in enumerate(frames):
        if i == 0:
            ref, prev, prev2 = x.clone(), x.clone(), x.clone()
            continue
        measured, _ = noise.frame_noise(x, prev, prev2, cfg.block, cfg.min_pixels, FLOOR)
        tau = noise.threshold(level, measured, cfg.noise_multiple, FLOOR, CEILING)
        changed = (masks.pixel_change(x, ref) > tau.reshape(1, 1, 1, 1)).float()
        counts = F.avg_pool2d(changed, cfg.block, cfg.block, ceil_mode=True) * cfg.block ** 2
        blocks = (counts >= cfg.min_pixels).float()
        fraction = masks.dilate(blocks, MARGIN).mean().reshape(1)
        cut = bool(fraction > 0.6)
        yield {"index": i, "ref": ref, "tau": tau, "changed": blocks}
        moved = torch.ones_like(blocks) if cut else blocks
        ref = torch.lerp(ref, x, masks.cells_of(moved, cfg.block, x.shape[2], x.shape[3]))
        level = noise.update_level(level, measured, fraction, torch.tensor([float(cut)]))
        prev2, prev = prev, x


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    inter, union = float((a * b).sum()), float(torch.maximum(a, b).sum())
    return 1.0 if union == 0 else inter / union


def warm_start(gate: CommonGate, samples: list[dict], steps: int, lr: float, generator: torch.Generator,
               progress: bool = True) -> dict:
    """Fit the gate to the rule's decisions (``samples``: features + changed). Returns the IoU of the kept
    blocks with the rule's, and the two keep rates, over all samples."""
    feats = torch.cat([s["features"] for s in samples])
    target_skip = 1.0 - torch.cat([s["changed"] for s in samples])
    keep_share = float(1 - target_skip.mean())
    # Class balance: kept blocks are a few percent of a fixed camera's frame.
    pos_weight = torch.tensor((1 - keep_share) / max(keep_share, 1e-3))
    opt = torch.optim.Adam(gate.parameters(), lr=lr)
    gate.train()
    batch = min(16, len(samples))
    loss = None
    for _ in tqdm(range(steps), desc="warm start (imitate regiondrop)", disable=not progress, dynamic_ncols=True):
        idx = torch.randint(0, len(samples), (batch,), generator=generator)
        logits = gate(feats[idx])
        # Weighted on the kept class (target 0 for skip): BCE on keep logits = -skip logits.
        loss = F.binary_cross_entropy_with_logits(-logits, 1 - target_skip[idx], pos_weight=pos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    gate.eval()
    with torch.no_grad():
        kept = 1 - gate.decide(gate(feats))
    return {"iou": iou(kept, 1 - target_skip), "gate_keep": float(kept.mean()), "rule_keep": keep_share,
            "steps": steps, "loss": float(loss.detach()) if steps else None}


class DenseCache:
    """The frozen backbone's dense results per frame, computed once: outputs (the anchors) for every
    frame asked, layer outputs (the caches) for at most ``capacity`` reference frames, float16."""

    def __init__(self, runner: ReuseRunner, capacity: int):
        self.runner, self.capacity = runner, capacity
        self.outputs: dict = {}
        self.layers: OrderedDict = OrderedDict()

    @torch.no_grad()
    def get(self, key, x: torch.Tensor, layers: bool):
        if key not in self.outputs or (layers and key not in self.layers):
            outputs, seen = self.runner.record(x)
            self.outputs[key] = [o.detach() for o in triplet.flat_outputs(outputs)]
            if layers:
                self.layers[key] = {k: v.detach().half() for k, v in seen.items()}
                while len(self.layers) > self.capacity:
                    self.layers.popitem(last=False)
        return self.outputs[key], (self.layers.get(key) if layers else None)


def train_common(opts, model: nn.Module, preprocess, clips: list, specs: list, size, steps_plan, device,
                 resume: bool = False, progress: bool = True) -> CommonGate:
    """Both stages (module docstring); writes ``opts.out``."""
    torch.manual_seed(opts.seed)
    generator = torch.Generator().manual_seed(opts.seed * 1000)
    out = Path(opts.out)
    gate = CommonGate(CommonGateConfig(), opts.model, TILES)
    cfg = gate.config
    frames = [[preprocess(f) for f in clip] for clip in clips]
    h, w = frames[0][0].shape[2:]

    resuming = resume and out.is_file()
    # Stage 1: imitate the rule (skipped when resuming: the checkpoint holds the warm-started gate).
    samples = []
    for c, clip in enumerate(frames):
        for r in replay_rule(clip, cfg):
            x = clip[r["index"]]
            samples.append({"clip": c, "index": r["index"], "tau": r["tau"], "changed": r["changed"],
                            "features": gate.features(x, r["ref"], r["tau"])})
    warm = {} if resuming else warm_start(gate, samples, opts.warm_steps, opts.warm_lr, generator, progress)
    history: list = []
    taus = {(s["clip"], s["index"]): s["tau"] for s in samples}
    del samples

    # Stage 2: triplet + budget on what inference reuses.
    model = model.eval().requires_grad_(False).to(device)
    gate.to(device).train()
    runner = ReuseRunner(model, steps_plan, (h, w), cfg.block)
    cache = DenseCache(runner, opts.cache_frames)
    # Reference frames from a fixed pool, so their caches are computed once and kept. Drawn with
    # their own generator: a resumed run skips the warm start (which draws from ``generator``) and
    # must still draw the same pool.
    pool = []
    for c, clip in enumerate(frames):
        pool += [(c, i) for i in range(len(clip) - 1)]
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(opts.seed * 1000 + 1))[:opts.cache_frames]
    pool = [pool[int(i)] for i in order]
    loss_fn = nn.TripletMarginLoss(margin=opts.margin)
    opt = torch.optim.AdamW(gate.parameters(), lr=opts.lr)
    start = 0
    if resuming:
        start, history = _restore(out, gate, opt, generator)
        warm = gate.info.get("warm", warm)
    bar = tqdm(total=opts.steps, initial=start, desc="train-gates (common)", unit="step", disable=not progress,
               dynamic_ncols=True)
    for step in range(start, opts.steps):
        c, i = pool[int(torch.randint(0, len(pool), (1,), generator=generator))]
        clip = frames[c]
        d = int(torch.randint(1, opts.max_gap + 1, (1,), generator=generator))
        t = min(i + d, len(clip) - 1)
        x_ref, x_t = clip[i].to(device), clip[t].to(device)
        anchor, _ = cache.get((c, t), x_t, layers=False)
        _, caches = cache.get((c, i), x_ref, layers=True)
        tau = taus.get((c, t), torch.tensor([FLOOR * cfg.noise_multiple])).to(device)
        feats = gate.features(x_t, x_ref, tau)
        logits = gate(feats)
        skip, p_skip = gate.sample(logits)
        keep = masks.dilate(1 - skip, MARGIN)
        with torch.no_grad():
            counts = F.avg_pool2d((masks.pixel_change(x_t, x_ref) > tau.reshape(1, 1, 1, 1)).float(), cfg.block,
                                  cfg.block, ceil_mode=True) * cfg.block ** 2
            rule_keep = float((counts >= cfg.min_pixels).float().mean())
        scales = triplet.rms_scales(anchor)
        h_a = triplet.heatmap(anchor, scales)
        h_p = triplet.heatmap(runner.run(x_t, x_ref, caches, keep), scales)
        with torch.no_grad():
            h_n = triplet.heatmap(runner.run(x_t, x_ref, caches, masks.dilate(skip.detach(), MARGIN)), scales)
        trip = loss_fn(h_a, h_p, h_n)
        target = max((1 - opts.reduce_keep) * rule_keep, 1e-3)
        budget = (((1 - p_skip).mean() - target) / target) ** 2
        loss = trip + opts.budget_weight * budget
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        record = {"step": step + 1, "loss": loss.item(), "triplet": trip.item(),
                  "keep": float(1 - skip.detach().mean()),
                  "rule_keep": rule_keep, "d_ap": (h_a - h_p).norm().item(), "d_an": (h_a - h_n).norm().item()}
        history.append(record)
        bar.set_postfix(loss=f"{record['loss']:.4f}", keep=f"{record['keep']:.3f}", rule=f"{rule_keep:.3f}",
                        d_ap=f"{record['d_ap']:.4f}")
        bar.update()
        if (step + 1) % opts.checkpoint_every == 0 or step + 1 == opts.steps:
            _save(out, gate, opt, generator, opts, step + 1, history, size, warm)
    bar.close()
    if opts.steps == 0:
        _save(out, gate, opt, generator, opts, 0, history, size, warm)
    return gate.cpu().eval()


def _save(out, gate, opt, generator, opts, step, history, size, warm) -> None:
    gate.info = {"stage": "pretrain", "design": "common", "steps": step, "input_size": list(size), "warm": warm,
                 "history": history, "options": _plain(asdict(opts))}
    gate.save(out, train_state={"step": step, "optimizer": opt.state_dict(), "generator": generator.get_state(),
                                "rng": torch.get_rng_state()})


def _restore(out, gate, opt, generator):
    ckpt = torch.load(out, map_location="cpu", weights_only=True)
    state = ckpt.get("train_state") if isinstance(ckpt, dict) else None
    if state is None or ckpt.get("design") != "common":
        raise PassrtError(f"{out} holds no common-gate training state to resume from: write to a new --out")
    gate.load_state_dict(ckpt["state_dict"])
    gate.info = ckpt.get("info", {})
    opt.load_state_dict(state["optimizer"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["rng"])
    return state["step"], list(gate.info.get("history", []))
