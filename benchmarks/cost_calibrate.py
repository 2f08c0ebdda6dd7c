"""Compare the cost model's per-layer predictions with the standalone test's GPU timings.

    python benchmarks/cost_calibrate.py TIMING_JSON DEVICE OUT_DIR

TIMING_JSON is what ``twins_test --time --json`` writes on a GPU (benchmarks/gpu_check.sh does it):
per SSDLite conv step at 576x768, the median ms at 0, 15 and 100 % active tiles (fp16, compaction
included). DEVICE is a key of passrt.plan.cost.DEVICES (h200, orin, xavier, nano). For every layer and
activity it writes measured / predicted, and per step kind the median of that ratio at 100 % active:
the factor by which the assumed sparse efficiencies (cost.Efficiency.sparse_mac / sparse_bw) are off on
that GPU. Writes OUT_DIR/calibration.json and prints a table; nothing is changed in the model by hand.
"""

from __future__ import annotations

import json
import statistics
import sys
from dataclasses import asdict
from pathlib import Path

import torch

from passrt.engine import sparse_model as sm
from passrt.models import load_model
from passrt.plan import cost

SIZE = (576, 768)
ACTIVITY = {"ms_0": 0.0, "ms_15": 0.15, "ms_100": 1.0}


def ssdlite_layers() -> dict:
    spec = load_model("ssdlite-pedestrian")
    model = sm.sparsify(spec.module, "regiondrop", executor="reference")
    with torch.no_grad():
        model(torch.zeros(1, 3, *SIZE))
    return {layer.label: layer for layer in cost.layer_costs(model.plan.steps)}


def compare(timings: list[dict], layers: dict, device: cost.Device, eff: cost.Efficiency = cost.Efficiency()) -> dict:
    rows, by_kind = [], {}
    for t in timings:
        layer = layers.get(t["layer"])
        if layer is None:
            raise SystemExit(f"cost_calibrate: error: {t['layer']} is not a conv step of SSDLite at 576x768")
        row = {"layer": t["layer"], "kind": layer.kind}
        for key, active in ACTIVITY.items():
            predicted = cost.sparse_time(layer, active, device, eff) * 1e3
            row[key] = {"measured_ms": t[key], "predicted_ms": predicted, "ratio": t[key] / predicted}
        by_kind.setdefault(layer.kind, []).append(row["ms_100"]["ratio"])
        rows.append(row)
    kinds = {k: {"layers": len(v), "median_ratio_at_100": statistics.median(v)} for k, v in by_kind.items()}
    return {"device": device.name, "efficiency_assumed": asdict(eff),
            "kinds": kinds, "layers": rows,
            "note": "ratio = measured / predicted; > 1: the GPU is slower than the model assumes"}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print("usage: python benchmarks/cost_calibrate.py TIMING_JSON DEVICE OUT_DIR", file=sys.stderr)
        return 2
    timing_path, key, out = Path(argv[0]), argv[1], Path(argv[2])
    if key not in cost.DEVICES:
        print(f"cost_calibrate: error: unknown device {key!r} (one of {', '.join(cost.DEVICES)})", file=sys.stderr)
        return 2
    try:
        timings = json.loads(timing_path.read_text())
    except (OSError, ValueError) as e:
        print(f"cost_calibrate: error: cannot read {timing_path}: {e}", file=sys.stderr)
        return 2
    result = compare(timings, ssdlite_layers(), cost.DEVICES[key])
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(result, indent=1))
    print(f"measured / predicted per step kind at 100 % active on {result['device']}:")
    for kind, v in result["kinds"].items():
        print(f"  {kind:20s} {v['median_ratio_at_100']:.2f} (median of {v['layers']} layers)")
    print(f"wrote {out / 'calibration.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
