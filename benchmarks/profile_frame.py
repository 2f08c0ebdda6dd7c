"""Where one frame's time goes: a sparse frame and a dense frame of SSDLite on a real clip.

Times every step of the plan (wall clock around the step, by step kind and by what it did:
skipped / sparse / dense; a run of native steps the native executor runs in one call is one
entry), the policy's mask work and the Python between steps, and lists the ATen operators the
frame spends its time in (torch.profiler). Medians over --repeat frames.

    python benchmarks/profile_frame.py [--input vtest] [--frames 40] [--executor native|reference] [--cpu-time]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch

from passrt import assets
from passrt.engine import sparse_model as sm
from passrt.models import load_model
from passrt.plan.steps import DenseStep
from passrt.runtime.frames import read_frames


def timed_steps(executor, sink, clock):
    """Wrap the executor's sparse call and every step's dense call to add their time to ``sink[(kind, mode)]``."""
    def timed(fn, key):
        def wrapper(*a):
            t = clock()
            fn(*a)
            sink[key(*a)] += clock() - t
        return wrapper

    executor.run_sparse = timed(executor.run_sparse, lambda step, active: (step.kind, "sparse"))
    # The native executor's whole-plan path: runs of native steps in one call each (every conv step of
    # SSDLite and its input normalisation), timed as one entry.
    schedule = getattr(executor, "schedule", None) or []
    for i, item in enumerate(schedule):
        if isinstance(item, tuple):
            program, steps = item
            schedule[i] = (timed(program, lambda tiles, _n=len(steps): (f"native program ({_n} steps)", "sparse")),
                           steps)
    for step in executor.plan.steps[1:]:
        method = "run" if isinstance(step, DenseStep) else "run_dense"
        kind = "dense_step" if isinstance(step, DenseStep) else step.kind
        setattr(step, method, timed(getattr(step, method), lambda *a, _k=kind: (_k, "dense")))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default="vtest")
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--policy", default="regiondrop")
    ap.add_argument("--executor", default="reference")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ops", type=int, default=15, help="ATen operators listed")
    ap.add_argument("--cpu-time", action="store_true",
                    help="process CPU time instead of wall time (steadier on a busy machine; use --threads 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    spec = load_model("ssdlite-pedestrian")
    clip = read_frames(str(assets.fetch(args.input)), count=args.frames)
    xs = [spec.preprocess(f) for f in clip.frames]
    clock = time.process_time if args.cpu_time else time.perf_counter
    shared = defaultdict(float)
    model = sm.sparsify(spec.module, args.policy, executor=args.executor)
    model(xs[0])
    timed_steps(model.executor, shared, clock)
    rows = {"sparse": [], "dense": []}
    for x in xs[1:] + xs[:1]:
        if x is xs[0]:
            model.reset()
        shared.clear()
        t = clock()
        model(x)
        total = clock() - t
        kind = "dense" if model.stats()["refresh"] else "sparse"
        rows[kind].append((total, dict(shared), model.stats()["active_fraction"]))
    for kind, frames in rows.items():
        if not frames:
            continue
        total = statistics.median(f[0] for f in frames)
        keys = sorted({k for f in frames for k in f[1]})
        print(f"\n## {kind} frame, executor {model.stats()['executor']} ({len(frames)} frames, median {total * 1e3:.1f} ms, "
              f"MACs executed {statistics.median(f[2] for f in frames):.3f} of dense)")
        print("| step kind | mode | ms | share |")
        print("| --- | --- | --- | --- |")
        acc = 0.0
        for k in sorted(keys, key=lambda k: -statistics.median(f[1].get(k, 0.0) for f in frames)):
            ms = statistics.median(f[1].get(k, 0.0) for f in frames) * 1e3
            acc += ms
            print(f"| {k[0]} | {k[1]} | {ms:.2f} | {ms / (total * 1e3):.0%} |")
        rest = total * 1e3 - acc
        print(f"| policy masks, Python between steps, outputs | | {rest:.2f} | {rest / (total * 1e3):.0%} |")
    # Operator view of one sparse frame.
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for x in xs[-6:-1]:
            model(x)
    print("\n## ATen operators over 5 sparse frames (self CPU time)\n")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.ops))


if __name__ == "__main__":
    main()
