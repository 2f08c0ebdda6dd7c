"""Several streams in one process: 1, 2 and 4 streams of vtest through `passrt run`'s pipeline, the dense
engine one call per stream and batched (--batch-streams), and regiondrop (one call per stream: each
stream has its own caches and masks). Aggregate FPS and per-stream latency, one table, one run.

    python benchmarks/multistream.py --frames 40 --out benchmarks/results/multistream

Every configuration runs a short warm-up (oneDNN primitives, plans, the ONNX export), its engines are
reset, then the measured run: FPS over the whole pipeline (decode, preprocess, engine, decode of the
detections), headless, no drawing. The configurations run in the order of the table, so the machine's
load moves under all of them: ``uptime`` is recorded before and after.
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

MODES = (("dense", False), ("dense", True), ("regiondrop", False))


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
    lines = ["| streams | engine | calls | aggregate FPS | per-stream FPS | engine p50 per frame (ms) | frame p50 (ms) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        mean = sum(r["per_stream_fps"]) / len(r["per_stream_fps"])
        lines.append(f"| {r['streams']} | {r['policy']} | {'one batched' if r['batched'] else 'one per stream'} | "
                     f"{r['aggregate_fps']:.2f} | {mean:.2f} | {max(r['engine_p50_ms']):.0f} | "
                     f"{max(r['frame_p50_ms']):.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", default="vtest")
    ap.add_argument("--frames", type=int, default=40, help="measured frames per stream")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--streams", default="1,2,4")
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
    rows = []
    for n in (int(s) for s in args.streams.split(",")):
        for policy, batch in MODES:
            rows.append(measure(policy, batch, n, args.frames, args.warmup, args.input, size))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    after = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    result = {"machine": machine(), "input": args.input, "uptime_before": before, "uptime_after": after,
              "command": f"python benchmarks/multistream.py --input {args.input} --frames {args.frames} "
                         f"--warmup {args.warmup} --streams {args.streams}" + (f" --size {args.size}" if args.size else ""),
              "rows": rows}
    (out / "multistream.json").write_text(json.dumps(result, indent=1))
    text = f"{result['command']}\nuptime before: {before}\nuptime after:  {after}\n\n{table(rows)}\n"
    (out / "multistream.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
