"""`passrt calibrate`: the fastest operating point of a policy that keeps a target agreement with
the dense model, found on the user's own footage.

The clip's first frames are the *search* frames: one :func:`~passrt.runtime.bench.run_benchmark`
runs dense PyTorch, dense ONNX Runtime (the engine a CPU user would otherwise run, and the one that
answers the candidates' dense frames, as in ``passrt run``) and every candidate of
the policy's grid (:data:`GRID`) side by side on them, measuring agreement with the dense detections
and speed. Agreement is both figures ``passrt bench`` reports, AP@0.5 ranked down to low scores and
AP@0.5 of the detections at the display threshold (what a user sees): a point meets the target when
the lower of the two does. The fastest candidate that meets it wins; ``exact`` at threshold 0 (the
dense outputs, computed sparsely) is always a candidate, so one always does. The clip's last frames
are *held out*: a second run measures the winner there, on frames the choice never saw.
"""

from __future__ import annotations

import itertools
from datetime import datetime, timezone

from passrt.errors import PassrtError, redact
from passrt.policies.noise import AUTO
from passrt.policies.spec import PolicySpec
from passrt.runtime.bench import pyplot, run_benchmark

# The parameters each policy is searched over (the other parameters keep their defaults).
GRID = {
    "regiondrop": {"noise_multiple": [2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0], "margin": [1, 2]},
    "exact": {"noise_multiple": [1.0, 2.0, 3.0, 4.0, 6.0, 8.0]},
    "layerwise": {"noise_multiple": [2.0, 4.0, 8.0], "feature_threshold": [0.02, 0.05, 0.1]},
    "pass": {"skip_above": [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]},
}
SAFE = PolicySpec("exact", {"threshold": 0.0}, "exact:threshold=0")  # equal to dense: meets any target


def candidates(policy: PolicySpec) -> list[PolicySpec]:
    """Every point of the policy's grid, the parameters the user fixed kept as given."""
    if policy.name not in GRID:
        raise PassrtError(f"nothing to calibrate for policy '{policy.name}'; choose one of: {', '.join(GRID)}")
    grid = {k: v for k, v in GRID[policy.name].items() if k not in policy.params}
    if policy.name in ("regiondrop", "exact", "layerwise"):
        if policy.params.get("threshold", AUTO) != AUTO:
            grid.pop("noise_multiple", None)  # an absolute threshold was asked for
        fixed = {"threshold": AUTO, **policy.params}
    else:
        fixed = dict(policy.params)
    out = []
    for values in itertools.product(*grid.values()):
        params = {**fixed, **dict(zip(grid, values))}
        label = policy.name + ":" + ",".join(f"{k}={v}" for k, v in params.items()) if params else policy.name
        out.append(PolicySpec(policy.name, params, label))
    return out + [SAFE]


def calibrate(uri: str, model: str, policy: PolicySpec, target: float = 0.99, frames: int = 150,
              held_out: float = 0.3, progress: bool = True) -> dict:
    """Search, choose, check on held-out frames; the record `passrt calibrate` writes."""
    if not 0 < target <= 1:
        raise PassrtError(f"--target-agreement must be in (0, 1], got {target}")
    from passrt.models import load_model

    loaded = load_model(model)
    if loaded.postprocess is None or loaded.task != "detection":
        raise PassrtError(f"calibrate holds detection agreement (AP@0.5) to a target; model '{model}' is not a "
                          "detector passrt knows (measure its agreement with `passrt bench`)")
    n_held = max(10, int(round(frames * held_out)))
    n_search = frames - n_held
    if n_search < 20:
        raise PassrtError(f"--frames {frames} is too few: calibration needs at least {20 + n_held} "
                          "(20 to search, the rest held out)")
    grid = candidates(policy)
    search = run_benchmark(uri, model, grid, frames=n_search, onnxruntime=True, progress=progress,
                           desc=f"search ({len(grid)} candidates)")
    if search["frames"] < n_search:
        raise PassrtError(f"{redact(uri)}: only {search['frames']} frames; calibration needs {frames} (lower --frames)")
    rows = [_row(spec.label, search["policies"][spec.label]) for spec in grid]
    chosen = max((r for r in rows if _agreement(r) >= target), key=lambda r: r["speedup_vs_dense"])
    spec = next(s for s in grid if s.label == chosen["label"])
    check = run_benchmark(uri, model, [spec], frames=n_held, start=n_search, onnxruntime=True,
                          progress=progress, desc="held-out check")
    held = _row(spec.label, check["policies"][spec.label])
    return {
        "policy": {"name": spec.name, **spec.params},
        "calibration": {
            "input": redact(uri), "model": model, "target_agreement": target, "created": _now(),
            "search_frames": [0, n_search], "held_out_frames": [n_search, n_search + check["frames"]],
            "chosen": chosen["label"], "held_out": held, "meets_target_held_out": _agreement(held) >= target,
            "search": rows, "machine": search["machine"],
        },
    }


def _row(label: str, entry: dict) -> dict:
    return {"label": label, "speedup_vs_dense": entry["speedup_vs_dense"],
            "speedup_vs_onnxruntime": entry.get("speedup_vs_onnxruntime"), "p50_ms": entry["latency_ms"]["p50"],
            "active_fraction": entry["active_fraction"], "agreement_ap50": entry["agreement_ap50"],
            "agreement_ap50_display": entry["agreement_ap50_display"],
            "output_error_max": max(entry["output_error"]["max"], default=0.0)}


def _agreement(row: dict) -> float:
    """What the target holds: the lower of AP@0.5 and AP@0.5 at the display threshold."""
    return min(row["agreement_ap50"], row["agreement_ap50_display"])


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def format_table(record: dict) -> str:
    cal = record["calibration"]
    lines = [f"{'candidate':<58} {'x dense':>8} {'x ORT':>6} {'active':>7} {'AP50':>6} {'AP50@thr':>8} {'max|err|':>9}"]
    for r in sorted(cal["search"], key=lambda r: -r["speedup_vs_dense"]):
        mark = "  <- chosen" if r["label"] == cal["chosen"] else (
            "" if _agreement(r) >= cal["target_agreement"] else "  (below target)")
        lines.append(f"{r['label']:<58} {r['speedup_vs_dense']:8.2f} {_ort(r):>6} {r['active_fraction']:7.3f} "
                     f"{r['agreement_ap50']:6.3f} {r['agreement_ap50_display']:8.3f} {r['output_error_max']:9.3g}{mark}")
    h = cal["held_out"]
    lines.append(f"held-out frames {cal['held_out_frames'][0]}-{cal['held_out_frames'][1]}: {h['speedup_vs_dense']:.2f}x "
                 f"dense PyTorch, {_ort(h)}x ONNX Runtime, AP50 {h['agreement_ap50']:.3f}, AP50@thr "
                 f"{h['agreement_ap50_display']:.3f} (target {cal['target_agreement']} for both)"
                 + ("" if cal["meets_target_held_out"] else "  BELOW TARGET: calibrate on more, or more varied, frames"))
    return "\n".join(lines)


def _ort(row: dict) -> str:
    x = row.get("speedup_vs_onnxruntime")
    return "-" if x is None else f"{x:.2f}"


def plot(record: dict, path: str) -> None:
    plt = pyplot()
    cal = record["calibration"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rows, h = cal["search"], cal["held_out"]
    # Against ONNX Runtime, the engine a CPU user would otherwise run, where it was measured (records written
    # before calibrate measured it have only dense PyTorch).
    ort = all(r.get("speedup_vs_onnxruntime") for r in rows + [h])
    key, engine = ("speedup_vs_onnxruntime", "dense ONNX Runtime") if ort else ("speedup_vs_dense", "dense PyTorch")
    ax.scatter([r[key] for r in rows], [_agreement(r) for r in rows], s=18, label="candidates")
    chosen = next(r for r in rows if r["label"] == cal["chosen"])
    ax.scatter([chosen[key]], [_agreement(chosen)], s=80, facecolors="none",
               edgecolors="red", label=f"chosen: {chosen['label']}")
    ax.scatter([h[key]], [_agreement(h)], marker="x", color="red", label="chosen, held-out frames")
    ax.axhline(cal["target_agreement"], color="gray", ls="--", lw=1, label="target")
    ax.set_xlabel(f"speed-up over {engine} (median latency)")
    ax.set_ylabel("agreement with dense (lower of AP50, AP50@thr)")
    ax.set_title(f"{record['calibration']['model']} on {record['calibration']['input'].rsplit('/', 1)[-1]}")
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
