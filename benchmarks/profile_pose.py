"""Where ``blazepose``'s time goes: the person detector, the landmark model's sparse engine, the hand-off.

    python benchmarks/profile_pose.py [--input vtest] [--frames 50] [--policies regiondrop,exact] [--cpu-time]

Two set-ups side by side in one process, taking turns frame by frame so that load hits them alike:
``before`` (the landmark model with all five of the file's outputs, the person detector with no
dense engine: this branch's state before the change) and ``after`` (the model as ``blazepose`` loads
it now: only the outputs the keypoints read; the detector's wide-change frames answered by ONNX
Runtime, as a model run on its own has). Per set-up: the crop's preprocess per frame (the SSDLite
person detector under regiondrop, as ``passrt bench`` runs it, timed apart), then dense ONNX
Runtime and each policy's sparse engine (ONNX Runtime as its dense engine) on the same crops. Each
sparse engine's time is split into frames handed to ONNX Runtime, frames passrt computes densely
itself (first frame, crop moves, catching the caches up), sparse frames, and within every frame
passrt runs the policy's mask work (``begin_frame``: the change map and the dense-or-not decision).
``--cpu-time``: process CPU time with one thread (steadier on a busy machine than wall time).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch

from passrt import assets
from passrt.models import load_model
from passrt.policies import PolicySpec
from passrt.runtime.backends import open_backend, open_stages
from passrt.runtime.frames import read_frames


def instrument(backend, sink, clock):
    """Time the executor's parts into ``sink`` (name -> list of seconds), once it exists."""
    ex = backend.model.executor

    def timed(obj, name, key):
        fn = getattr(obj, name)

        def wrapper(*a, **k):
            t = clock()
            out = fn(*a, **k)
            sink[key].append(clock() - t)
            return out
        setattr(obj, name, wrapper)

    timed(ex, "_by_dense_engine", "handed to ONNX Runtime")
    timed(ex.policy, "begin_frame", "policy begin_frame (masks, decision)")
    run_steps = ex._run_steps

    def steps(ctx, refresh):
        t = clock()
        out = run_steps(ctx, refresh)
        sink["passrt dense frame" if refresh else "passrt sparse frame"].append(clock() - t)
        return out
    ex._run_steps = steps


def setups(names):
    """name -> (ModelSpec, label): ``before`` and/or ``after`` (see the module docstring)."""
    from passrt.models.blazepose import load_blazepose

    out = {}
    for name in names:
        spec = load_model("blazepose")
        if name == "before":
            spec.module = load_blazepose(outputs=None)
        out[name] = open_stages(spec, dense_engine=None if name == "before" else "ort")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default="vtest")
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--policies", default="regiondrop,exact")
    ap.add_argument("--setups", default="before,after")
    ap.add_argument("--cpu-time", action="store_true", help="process CPU time, one thread")
    args = ap.parse_args()
    if args.cpu_time:
        torch.set_num_threads(1)
    clock = time.process_time if args.cpu_time else time.perf_counter
    specs = setups(args.setups.split(","))
    clip = read_frames(str(assets.fetch(args.input)), count=args.frames)
    detector = {s: [] for s in specs}
    xs = {s: [] for s in specs}
    for f in clip.frames:
        for s, spec in specs.items():
            t = clock()
            xs[s].append(spec.preprocess(f))
            detector[s].append(clock() - t)
    print(f"blazepose on {args.input}, {len(clip.frames)} frames, {torch.get_num_threads()} threads, "
          f"{'process CPU time' if args.cpu_time else 'wall time'}")
    for s in specs:
        print(f"{s}: person detector (SSDLite, regiondrop, in the preprocess): median "
              f"{statistics.median(detector[s][1:]) * 1e3:.1f} ms (frames 1+), sum {sum(detector[s]):.2f} s")
    engines = {}
    for s, spec in specs.items():
        engines[(s, "onnxruntime")] = open_backend("ort", spec, example=xs[s][0])
        for p in args.policies.split(","):
            engines[(s, p)] = open_backend(PolicySpec.parse(p), spec, dense_engine="ort")
    totals = {key: [] for key in engines}
    parts = {key: defaultdict(list) for key in engines}
    for i in range(len(clip.frames)):
        for key, engine in engines.items():
            x = xs[key[0]][i]
            t = clock()
            with torch.inference_mode():
                engine(x)
            totals[key].append(clock() - t)
            if i == 0 and key[1] != "onnxruntime":
                instrument(engine, parts[key], clock)
    print("\n| set-up | engine | median ms/frame (frames 1+) | x ORT | part | frames | median ms | sum s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for key, ts in totals.items():
        ort = statistics.median(totals[(key[0], "onnxruntime")][1:])
        med = statistics.median(ts[1:])
        print(f"| {key[0]} | {key[1]} | {med * 1e3:.1f} | {ort / med:.2f} | all | {len(ts) - 1} | {med * 1e3:.1f} | "
              f"{sum(ts[1:]):.2f} |")
        accounted = 0.0
        for part, vals in sorted(parts[key].items()):
            accounted += sum(vals)
            print(f"| | | | | {part} | {len(vals)} | {statistics.median(vals) * 1e3:.1f} | {sum(vals):.2f} |")
        if parts[key]:
            print(f"| | | | | the rest (outputs, bookkeeping) | | | {sum(ts[1:]) - accounted:.2f} |")
    for key, engine in engines.items():
        if key[1] != "onnxruntime":
            st = engine.stats()
            print(f"{key[0]} {key[1]}: active {st.get('active_fraction', 1.0):.3f}, executor {st.get('executor')}")


if __name__ == "__main__":
    main()
