"""Soak test: a long `passrt run` with tracking, its memory and latency sampled as it goes.

    python benchmarks/soak.py --frames 10000 --out benchmarks/soak      # the issue's measurement
    python benchmarks/soak.py --frames 300 --out /tmp/soak             # a short check that it works

Runs `passrt run --input vtest --input-loop -1 --headless --track bytetrack --max-frames N --json ...`
as a subprocess (the clip loops: vtest has 795 frames) and reads its status lines (frame index and
that frame's engine latency, about two a second); at each line it samples the process's resident
memory (VmRSS from /proc). Writes soak.json (samples, the run's own summary), soak.md (a table per
window of frames: RSS, engine latency median and p95 of the sampled frames) and soak.png if
matplotlib is there. Pass: RSS growth after the first 1,000 frames (or the first tenth of a shorter
run) under 5 %. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

STATUS = re.compile(r"frame\s+(\d+) \|\s+([\d.]+) FPS \| engine\s+([\d.]+) ms")


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=10_000)
    p.add_argument("--input", default="vtest")
    p.add_argument("--policy", default="regiondrop")
    p.add_argument("--window", type=int, default=100, help="frames per table row (default 100)")
    p.add_argument("--out", default="benchmarks/soak", help="directory for soak.json, soak.md, soak.png")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "passrt", "run", "--input", args.input, "--input-loop", "-1", "--headless",
           "--policy", args.policy, "--track", "bytetrack", "--max-frames", str(args.frames),
           "--json", str(out / "run.json")]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    samples = []  # (frame, rss MB, engine ms)
    for line in proc.stderr:
        if m := STATUS.search(line):
            rss = rss_mb(proc.pid)
            if rss is not None:
                samples.append((int(m[1]), rss, float(m[3])))
    if proc.wait() != 0:
        print(f"passrt run failed ({proc.returncode}): {' '.join(cmd)}", file=sys.stderr)
        return 1
    run = json.loads((out / "run.json").read_text())
    frames = np.array([s[0] for s in samples])
    rss = np.array([s[1] for s in samples])
    settle = min(1000, args.frames // 10)
    after = rss[frames >= settle]
    growth = float((after.max() - after[0]) / after[0]) if after.size else float("nan")
    rows = []
    for start in range(0, args.frames, args.window):
        sel = (frames >= start) & (frames < start + args.window)
        if sel.any():
            lat = np.array([s[2] for s, k in zip(samples, sel) if k])
            rows.append((start, float(rss[sel].max()), float(np.median(lat)), float(np.percentile(lat, 95)), int(sel.sum())))
    record = {"command": " ".join(cmd[1:]), "frames": run["frames"], "fps": run["fps"], "settle_frames": settle,
              "rss_growth_after_settle": growth, "pass": bool(growth < 0.05), "samples": samples,
              "stages_ms": run["stages_ms"], "tracking": run.get("tracking")}
    (out / "soak.json").write_text(json.dumps(record, indent=1))
    md = [f"`{record['command']}`: {run['frames']} frames, {run['fps']:.2f} FPS; RSS growth after frame "
          f"{settle}: {growth:+.1%} ({'pass' if record['pass'] else 'FAIL'}: under 5 %)", "",
          "| frames | RSS max (MB) | engine median (ms) | engine p95 (ms) | samples |", "| --- | --- | --- | --- | --- |"]
    md += [f"| {a}-{a + args.window - 1} | {b:.0f} | {c:.1f} | {d:.1f} | {e} |" for a, b, c, d, e in rows]
    total = run["stages_ms"]["total"]
    md += ["", f"Whole run, per frame (all frames, from passrt's own statistics): min {total['min']:.1f}, median "
               f"{total['p50']:.1f}, p90 {total['p90']:.1f}, p99 {total['p99']:.1f}, max {total['max']:.1f} ms"]
    (out / "soak.md").write_text("\n".join(md) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
        a1.plot(frames, rss)
        a1.set_ylabel("RSS (MB)")
        a2.plot(frames, [s[2] for s in samples], ".", ms=2)
        a2.set_ylabel("engine (ms)")
        a2.set_xlabel("frame")
        fig.tight_layout()
        fig.savefig(out / "soak.png", dpi=100)
    except ImportError:
        pass
    print("\n".join(md))
    return 0 if record["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
