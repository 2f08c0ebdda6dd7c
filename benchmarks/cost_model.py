"""PREDICTIONS of dense-TensorRT vs passrt-sparse frame rates on Jetson Nano / Xavier / Orin and
the H200, from the roofline cost model (passrt/plan/cost.py) and vtest's real masks.

Nothing here runs on a GPU. The masks are real: SSDLite runs with the default regiondrop policy
on the native CPU executor over vtest's frames at 768x576 and every sparse frame's per-layer
active tile fractions are recorded; each frame is then priced on each device, for three designs:

- ``new``: issue 12's design (fp16 NHWC, tensor cores, device-side active-tile lists, state in
  place, per-layer crossover to dense);
- ``new, pessimistic``: the same with the sparse kernels' efficiencies halved (the CPU executor
  reaches about a quarter of its MAC ratio, benchmarks/RESULTS.md, so the assumed GPU factors may be
  optimistic);
- ``reviewed``: the design issue 12 reviewed (fp32 SIMT, per-frame copy of every cache through
  explicit state I/O, a grid over all tiles, one GEMV per cell on 1-cell tiles, no crossover).

No command-line options (environment: PASSRT_COST_FRAMES, default 40). Writes
benchmarks/results/cost_model/{predictions.json,predictions.md} and prints the tables.

    python benchmarks/cost_model.py
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from passrt import assets
from passrt.engine import sparse_model as sm
from passrt.models import load_model
from passrt.plan import cost
from passrt.runtime.frames import read_frames

OUT = Path(__file__).resolve().parent / "results" / "cost_model"
SIZE = (576, 768)


def record_masks(frames: int):
    """Per sparse frame, label -> active tile fraction; and the plan's layer costs."""
    spec = load_model("ssdlite-pedestrian")
    clip = read_frames(str(assets.fetch("vtest")), count=frames, size=SIZE)
    model = sm.sparsify(spec.module, "regiondrop")
    per_frame = []
    for f in clip.frames:
        with torch.no_grad():
            model(spec.preprocess(f))
        st = model.stats()
        if st["refresh"] or st["dense_engine"]:
            continue
        per_frame.append({label: (1.0 if v["mode"] == "dense" else v["active_fraction"])
                          for label, v in st["layers"].items()})
    return cost.layer_costs(model.plan.steps), per_frame, model.stats()["policy"]


def main():
    frames = int(os.environ.get("PASSRT_COST_FRAMES", "40"))
    t0 = time.time()
    layers, masks, policy = record_masks(frames)
    eff = cost.Efficiency()
    pessimistic = replace(eff, sparse_mac=eff.sparse_mac / 2, sparse_bw=eff.sparse_bw / 2)
    designs = {"new": (cost.NEW_DESIGN, eff, True), "new, pessimistic": (cost.NEW_DESIGN, pessimistic, True),
               "reviewed": (cost.OLD_DESIGN, eff, False)}
    macs_dense = sum(l.macs for l in layers)
    frame_values = 3 * SIZE[0] * SIZE[1]
    mask_s = {key: cost.mask_time(frame_values, dev, eff) for key, dev in cost.DEVICES.items()}
    mac_ratio = statistics.median(macs_dense / sum(l.macs * m.get(l.label, 1.0) for l in layers) for m in masks)
    rows = []
    for key, dev in cost.DEVICES.items():
        dense_ms = statistics.median(cost.predict(layers, m, dev, eff)["dense_s"] for m in masks) * 1e3
        row = {"device": dev.name, "arch": dev.arch, "dense_ms": dense_ms, "dense_fps": 1e3 / dense_ms}
        for name, (design, e, cross) in designs.items():
            ms = statistics.median(cost.predict(layers, m, dev, e, design, crossover=cross, extra_s=mask_s[key])
                                   ["sparse_s"] for m in masks) * 1e3
            row[name] = {"ms": ms, "fps": 1e3 / ms, "speedup": dense_ms / ms}
        zero = cost.predict(layers, {l.label: 0.0 for l in layers}, dev, eff, extra_s=mask_s[key])
        row["new_at_0pct_speedup"] = zero["speedup"]
        row["mask_ms"] = mask_s[key] * 1e3
        rows.append(row)
    crossovers = {key: {l.label: cost.crossover(l, cost.DEVICES[key], eff) for l in layers}
                  for key in ("nano", "orin")}
    # Where the reviewed design's time goes on Orin at vtest's median frame (the design choices).
    median_mask = masks[len(masks) // 2]
    orin = cost.DEVICES["orin"]
    ablation = {}
    for name, design in {"reviewed": cost.OLD_DESIGN,
                         "+ state in place": replace(cost.OLD_DESIGN, state_copy=False),
                         "+ compacted tile list": replace(cost.OLD_DESIGN, state_copy=False, grid_all_tiles=False),
                         "+ GEMM over gathered cells (no per-cell GEMV)": replace(cost.OLD_DESIGN, state_copy=False,
                                                                                  grid_all_tiles=False,
                                                                                  per_cell_gemv=False),
                         "+ fp16 tensor cores (= new, no crossover)": replace(cost.NEW_DESIGN),
                         }.items():
        p = cost.predict(layers, median_mask, orin, eff, design, crossover=False, extra_s=mask_s["orin"])
        ablation[name] = {"ms": p["sparse_s"] * 1e3, "speedup": p["speedup"]}
    p = cost.predict(layers, median_mask, orin, eff, extra_s=mask_s["orin"])
    ablation["+ per-layer crossover (= new)"] = {"ms": p["sparse_s"] * 1e3, "speedup": p["speedup"]}
    result = {
        "what": "PREDICTIONS of the cost model (passrt/plan/cost.py); nothing ran on a GPU",
        "clip": "vtest", "size": list(SIZE), "frames": frames, "sparse_frames_priced": len(masks), "policy": policy,
        "macs_dense": macs_dense, "mac_ratio_median": mac_ratio,
        "efficiency_assumed": asdict(eff), "efficiency_pessimistic": asdict(pessimistic),
        "devices": {k: asdict(d) for k, d in cost.DEVICES.items()},
        "predictions": rows, "crossover": crossovers, "ablation_orin_median_frame": ablation,
        "machine": {"host": platform.node(), "python": platform.python_version(), "torch": torch.__version__,
                    "seconds": round(time.time() - t0, 1)},
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "predictions.json").write_text(json.dumps(result, indent=1))
    md = render(result)
    (OUT / "predictions.md").write_text(md)
    print(md)


def render(r: dict) -> str:
    lines = [f"PREDICTIONS (cost model, nothing ran on a GPU): SSDLite at {r['size'][0]}x{r['size'][1]}, vtest, "
             f"{r['sparse_frames_priced']} sparse frames of {r['frames']} with the default regiondrop masks; "
             f"dense {r['macs_dense'] / 1e9:.2f} GMAC, median MAC ratio {r['mac_ratio_median']:.2f}x.", "",
             "Sparse times include the per-frame mask rule on the input frame (regiondrop: "
             "6 passes over the fp32 frame + 12 launches), which a dense engine does not pay.", "",
             "| device | dense TRT fp16 | sparse, new design | new, pessimistic | reviewed design | new at 0 % active "
             "| mask rule |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in r["predictions"]:
        cells = [f"{row[k]['fps']:.0f} FPS ({row[k]['speedup']:.2f}x)" for k in ("new", "new, pessimistic", "reviewed")]
        lines.append(f"| {row['device']} ({row['arch']}) | {row['dense_fps']:.0f} FPS ({row['dense_ms']:.2f} ms) | "
                     + " | ".join(cells) + f" | {row['new_at_0pct_speedup']:.1f}x | {row['mask_ms']:.2f} ms |")
    lines += ["", "Design choices on Orin at vtest's median frame (each row adds one change to the one above):", "",
              "| design | sparse ms | vs dense TRT |", "| --- | --- | --- |"]
    for name, v in r["ablation_orin_median_frame"].items():
        lines.append(f"| {name} | {v['ms']:.2f} | {v['speedup']:.2f}x |")
    lines += ["", "Per-layer crossover (active tile fraction above which the layer should run dense), new design:", "",
              "| device | below 0.10 | 0.10-0.50 | 0.50-0.99 | never (1.0) |", "| --- | --- | --- | --- | --- |"]
    for key, table in r["crossover"].items():
        v = list(table.values())
        lines.append(f"| {key} | {sum(x < 0.1 for x in v)} | {sum(0.1 <= x < 0.5 for x in v)} | "
                     f"{sum(0.5 <= x < 0.99 for x in v)} | {sum(x >= 0.99 for x in v)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
