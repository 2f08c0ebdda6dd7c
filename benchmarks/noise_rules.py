"""Noise-level rules side by side on one clip: AP50, AP50@thr and executed MACs of regiondrop (and any
other policy) under each rule, against dense PyTorch (whose detections are cached per clip and frame
count under $PASSRT_CACHE/noise_rules/, so several rule sets reuse one dense pass):

    python benchmarks/noise_rules.py CLIP FRAMES "RULE[,RULE...]" ["POLICY;POLICY..."]

RULE: ``track`` (the default level update, :func:`passrt.policies.noise.update_level`), ``step=X`` (the
same with ``STEP`` = X) or ``max`` (the earlier decaying max, ``max(measured, 0.98 x level)``, kept here
only to compare with); each policy runs once per rule, with the rule swapped in for its calls (one process,
the same decoded frames). Prints one line per (rule, policy): AP50, AP50@thr, mean active (executed /
dense MACs), and the level's median and max over the frames in 8-bit steps."""
import os, sys, pickle, numpy as np, torch
from pathlib import Path
from passrt.assets import resolve_input
from passrt.models import load_model
from passrt.runtime.backends import open_backend
from passrt.runtime.frames import stream_frames
from passrt.policies import PolicySpec, noise
from passrt.metrics import average_precision, LOW_SCORE

clip, n, rules = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
pols = (sys.argv[4] if len(sys.argv) > 4 else "regiondrop").split(";")
torch.set_num_threads(1)
spec = load_model("ssdlite-pedestrian")
images = [im for b in stream_frames(resolve_input(clip), n, block=10).blocks() for im in b]
cache = Path(os.environ.get("PASSRT_CACHE", "/tmp")) / "noise_rules" / f"{clip}_{n}.pkl"
if cache.exists():
    truth = pickle.load(open(cache, "rb"))
else:
    dense = open_backend("torch:dense", spec)
    truth = []
    for im in images:
        x = spec.preprocess(im)
        truth.append(spec.postprocess(dense(x), x.shape[2:], score_threshold=0.3).boxes)
    cache.parent.mkdir(parents=True, exist_ok=True)
    pickle.dump(truth, open(cache, "wb"))


def decaying_max(level, measured, changed_fraction, refresh):
    """The earlier rule: max(measured, 0.98 x level) on usable frames."""
    plausible = ((measured > 0) & (measured <= noise.CEILING)).float()
    unset = (level <= 0).float()
    usable = ((changed_fraction < noise.STATIC) & (measured <= noise.GROWTH * level)).float() * plausible
    followed = torch.maximum(measured, 0.98 * level)
    learned = unset * plausible * measured + (1 - unset) * (usable * followed + (1 - usable) * level)
    return torch.where(refresh.reshape(1) > 0, level, learned)


original, default_step = noise.update_level, noise.STEP
for rule in rules:
    fn = decaying_max if rule == "max" else original
    noise.STEP = float(rule.split("=")[1]) if rule.startswith("step=") else default_step
    for pol in pols:
        noise.update_level = fn
        b = open_backend(PolicySpec.parse(pol), spec, dense_engine="ort")
        ranked, act, levels = [], [], []
        for im in images:
            x = spec.preprocess(im)
            out = b(x)
            d = spec.postprocess(out, x.shape[2:], score_threshold=LOW_SCORE)
            ranked.append((d.boxes, d.scores))
            st = b.stats()
            act.append(st.get("active_fraction", 1.0))
            lv = b.model.policy.frame_stats().get("noise_level") if hasattr(b, "model") else None
            if lv is not None:
                levels.append(lv * 255)
        noise.update_level = original
        shown = [(bx[s >= .3], s[s >= .3]) for bx, s in ranked]
        lv = f"level median {np.median(levels):.1f} max {np.max(levels):.1f}" if levels else ""
        print(f"{clip} {n} rule={rule:<6} {pol:<34} AP50 {average_precision(ranked, truth):.3f} "
              f"AP50@thr {average_precision(shown, truth):.3f} active {np.mean(act):.3f} {lv}", flush=True)
