"""Several streams in one process: 1, 2 and 4 streams of vtest, dense and regiondrop, one call per stream vs
batched (--batch-streams: the dense model in one forward; regiondrop with one kernel call per layer over all
streams' active tiles). Aggregate FPS and per-stream latency, two tables, one run.

    python benchmarks/multistream.py --out benchmarks/results/multistream   # estimated 4-5 min, idle 2-core CPU

1. Whole pipeline (`passrt run`'s Pipeline: decode, preprocess, engine, detection decode; headless, no drawing):
   every configuration runs a short warm-up (oneDNN primitives, plans, the ONNX export), its engines are reset,
   then the measured run. The configurations run one after the other, so load that comes and goes falls on
   some and not others: ``uptime`` is recorded before and after.
2. Engines side by side (the figures the default is decided on): the same frames through two sets of engines,
   one call per stream and one batched call, alternated round by round (which goes first alternates too), so
   load falls on both alike; each stream starts at another point of the clip (different content). Per policy
   and stream count: median round time of each, the speed-up, and whether batching is faster ("batched only
   where faster": --batch-streams stays off by default unless this says faster for every count measured).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from passrt.runtime.bench import machine
from passrt.runtime.pipeline import Pipeline
from passrt.runtime.sources import CaptureOptions

POLICIES = ("dense", "regiondrop")
FASTER = 1.05  # a batched median round at least 5 % faster counts as faster (rounds' spread on an idle machine)


def measure(policy: str, batch: bool, streams: int, frames: int, warmup: int, uri: str, size=None) -> dict:
    capture = CaptureOptions(*size) if size else None
    pipeline = Pipeline([uri] * streams, policy, display=False, max_frames=warmup, batch=batch, capture=capture)
    pipeline.run(live=None)
    for backend in pipeline.backends:
        backend.reset()
    pipeline.max_frames = frames
    start = time.perf_counter()
    summary = pipeline.run(live=None)
    elapsed = time.perf_counter() - start
    per = summary.get("streams", [summary])
    return {"policy": policy, "batched": batch, "streams": streams, "frames_per_stream": frames,
            "aggregate_fps": sum(p["frames"] for p in per) / elapsed,
            "per_stream_fps": [p["fps"] for p in per],
            "engine_p50_ms": [p["stages_ms"]["engine"]["p50"] for p in per],
            "frame_p50_ms": [p["stages_ms"]["total"]["p50"] for p in per],
            "active_fraction_mean": [p["active_fraction_mean"] for p in per]}


def paired(policy: str, streams: int, rounds: int, uri: str, size=None, warmup: int = 3, offset: int = 15) -> dict:
    """``rounds`` rounds of one frame per stream through two sets of engines, one call per stream (A) and one
    batched call (B), alternated (ABBA...): both sets see the same frames, so each round compares the same work.
    The first ``warmup`` rounds (the dense first frame, the ONNX export) are not counted."""
    import torch

    from passrt.models import load_model
    from passrt.runtime.backends import open_backend
    from passrt.runtime.frames import read_frames

    spec = load_model("ssdlite-pedestrian")
    clip = read_frames(uri, count=warmup + rounds + offset * (streams - 1), size=(size[1], size[0]) if size else None,
                       preprocess=spec.preprocess).frames
    sets = []
    for _ in range(2):
        first = open_backend(policy, spec)
        sets.append([first] + [first.new_stream() for _ in range(streams - 1)])
    batched = sets[1][0].batcher(sets[1])
    positions = list(range(streams))
    single_ms, batched_ms = [], []
    for r in range(warmup + rounds):
        xs = [clip[r + offset * b] for b in range(streams)]
        order = ("A", "B") if r % 2 == 0 else ("B", "A")
        for which in order:
            t0 = time.perf_counter()
            if which == "A":
                for backend, x in zip(sets[0], xs):
                    backend(x)
            else:
                batched(xs, positions)
            ms = (time.perf_counter() - t0) * 1e3
            if r >= warmup:
                (single_ms if which == "A" else batched_ms).append(ms)
    med = torch.tensor(single_ms).median().item(), torch.tensor(batched_ms).median().item()
    stats = [b.stats() for b in sets[1]]
    alone = [reason for s in sets[1] if (reason := sets[1][0].unbatched(s)) is not None]  # none expected
    return {"policy": policy, "streams": streams, "rounds": rounds, "warmup_rounds": warmup,
            "one_call_per_stream_ms": single_ms, "batched_ms": batched_ms,
            "median_one_call_per_stream_ms": med[0], "median_batched_ms": med[1], "batched_speedup": med[0] / med[1],
            "aggregate_fps_one_call_per_stream": streams * 1e3 / med[0],
            "aggregate_fps_batched": streams * 1e3 / med[1],
            "active_fraction_mean": [s.get("active_fraction_mean", 1.0) for s in stats],
            "ran_alone": alone}


def markdown(header: list, rows: list) -> str:
    lines = [header, ["---"] * len(header)] + rows
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def paired_table(rows: list) -> str:
    header = ["engine", "streams", "one call per stream: round median (ms)", "batched: round median (ms)",
              "aggregate FPS, one call each", "aggregate FPS, batched", "batched speed-up", "mean active fraction"]
    return markdown(header, [[r["policy"], str(r["streams"]), f"{r['median_one_call_per_stream_ms']:.1f}",
                              f"{r['median_batched_ms']:.1f}", f"{r['aggregate_fps_one_call_per_stream']:.2f}",
                              f"{r['aggregate_fps_batched']:.2f}", f"{r['batched_speedup']:.2f}",
                              f"{sum(r['active_fraction_mean']) / len(r['active_fraction_mean']):.1%}"] for r in rows])


def verdict(rows: list) -> list:
    """Per policy: whether batching was faster (speed-up >= FASTER) at every stream count measured."""
    out = []
    for policy in dict.fromkeys(r["policy"] for r in rows):
        ups = {r["streams"]: r["batched_speedup"] for r in rows if r["policy"] == policy}
        faster = all(v >= FASTER for v in ups.values())
        out.append(f"{policy}: batched speed-up " + ", ".join(f"{v:.2f} ({n} streams)" for n, v in ups.items())
                   + (" -> faster at every count: batching pays" if faster else
                      f" -> not faster everywhere (threshold {FASTER}): keep one call per stream"))
    return out


def engine_alone(streams: int, reps: int, uri: str, size=None) -> dict:
    """The dense engine alone on ``streams`` real frames: one call per frame vs one batched call,
    alternated ``reps`` times (ABAB...), so load that comes and goes falls on both; medians."""
    import torch

    from passrt.models import load_model
    from passrt.runtime.backends import open_backend
    from passrt.runtime.frames import read_frames

    spec = load_model("ssdlite-pedestrian")
    dense = open_backend("dense", spec)
    clip = read_frames(uri, count=streams * 10, size=(size[1], size[0]) if size else None)
    xs = [spec.preprocess(image) for image in clip.frames[::10][:streams]]  # frames 10 apart: different content
    single, batched = [], []
    dense.batch(xs)  # warm-up of both paths
    for x in xs:
        dense(x)
    for _ in range(reps):
        t0 = time.perf_counter()
        for x in xs:
            dense(x)
        single.append((time.perf_counter() - t0) * 1e3)
        t0 = time.perf_counter()
        dense.batch(xs)
        batched.append((time.perf_counter() - t0) * 1e3)
    med = torch.tensor(single).median().item(), torch.tensor(batched).median().item()
    return {"streams": streams, "reps": reps, "per_stream_calls_ms": single, "batched_call_ms": batched,
            "median_per_stream_calls_ms": med[0], "median_batched_call_ms": med[1], "batched_speedup": med[0] / med[1]}


def table(rows: list) -> str:
    header = ["streams", "engine", "calls", "aggregate FPS", "per-stream FPS", "engine p50 per frame (ms)",
              "frame p50 (ms)"]
    return markdown(header, [[str(r["streams"]), r["policy"], "one batched" if r["batched"] else "one per stream",
                              f"{r['aggregate_fps']:.2f}", f"{sum(r['per_stream_fps']) / len(r['per_stream_fps']):.2f}",
                              f"{max(r['engine_p50_ms']):.0f}", f"{max(r['frame_p50_ms']):.0f}"] for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default="vtest")
    ap.add_argument("--frames", type=int, default=40, help="measured frames per stream, whole pipeline (0: skip it)")
    ap.add_argument("--rounds", type=int, default=40, help="rounds of the side-by-side engine comparison for "
                    "regiondrop (dense: a quarter as many, its frames are slow; 0: skip it)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--streams", default="1,2,4")
    ap.add_argument("--policies", default=",".join(POLICIES), help="(default dense,regiondrop)")
    ap.add_argument("--engine-alone", type=int, metavar="REPS", help="instead: the dense engine alone, one call per "
                    "frame vs one batched call, alternated REPS times")
    ap.add_argument("--size", metavar="WxH", help="scale the frames to this size (run's --input-width/height)")
    ap.add_argument("--out", default="benchmarks/results/multistream")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    size = tuple(int(v) for v in args.size.split("x")) if args.size else None
    if args.engine_alone:
        before = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        alone = [engine_alone(int(n), args.engine_alone, args.input, size) for n in args.streams.split(",")]
        after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        lines = [f"python benchmarks/multistream.py --input {args.input} --streams {args.streams} --engine-alone "
                 f"{args.engine_alone}" + (f" --size {args.size}" if args.size else ""),
                 f"uptime before: {before}", f"uptime after:  {after}", "",
                 "| frames (streams) | one call per frame, median (ms) | one batched call, median (ms) | batched speed-up |",
                 "| --- | --- | --- | --- |"]
        lines += [f"| {a['streams']} | {a['median_per_stream_calls_ms']:.0f} | {a['median_batched_call_ms']:.0f} | "
                  f"{a['batched_speedup']:.2f} |" for a in alone]
        (out / "engine_alone.json").write_text(json.dumps({"machine": machine(), "uptime_before": before,
                                                           "uptime_after": after, "command": lines[0],
                                                           "rows": alone}, indent=1))
        (out / "engine_alone.md").write_text("\n".join(lines) + "\n")
        print("\n".join(lines))
        return
    counts = [int(v) for v in args.streams.split(",")]
    policies = args.policies.split(",")
    rows = []
    if args.frames:
        for n in counts:
            for policy in policies:
                for batch in (False, True) if n > 1 else (False,):  # one stream: nothing to batch with
                    rows.append(measure(policy, batch, n, args.frames, args.warmup, args.input, size))
                    print(table(rows[-1:]).splitlines()[-1], flush=True)
    pairs = []
    if args.rounds:
        for policy in policies:
            for n in (c for c in counts if c > 1):
                pairs.append(paired(policy, n, args.rounds if policy != "dense" else max(args.rounds // 4, 3),
                                    args.input, size))
                print(paired_table(pairs[-1:]).splitlines()[-1], flush=True)
    after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    command = (f"python benchmarks/multistream.py --input {args.input} --frames {args.frames} --warmup {args.warmup} "
               f"--rounds {args.rounds} --streams {args.streams} --policies {args.policies}"
               + (f" --size {args.size}" if args.size else ""))
    result = {"machine": machine(), "input": args.input, "uptime_before": before, "uptime_after": after,
              "command": command, "rows": rows, "paired": pairs, "verdict": verdict(pairs) if pairs else []}
    (out / "multistream.json").write_text(json.dumps(result, indent=1))
    text = f"{command}\nuptime before: {before}\nuptime after:  {after}\n"
    if rows:
        text += f"\nWhole pipeline, configurations one after the other:\n\n{table(rows)}\n"
    if pairs:
        text += (f"\nEngines side by side (the same frames, one call per stream vs batched, alternated round by "
                 f"round):\n\n{paired_table(pairs)}\n\n" + "\n".join(result["verdict"]) + "\n")
    (out / "multistream.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
