"""`passrt bench`: every engine on the same decoded frames, side by side, in one process.

Frames are decoded and preprocessed once, a block at a time: only the current block of
``block`` frames is held (as the model's input tensors), so memory does not grow with
``--frames`` (10,000 frames of 768x576 held as float tensors would be 53 GB).
Engines take turns in blocks of ``block`` frames
(frames 0-9 through every engine, then 10-19, ...): each engine keeps its own state and
sees every frame in order, a noisy neighbour on a shared machine slows all engines alike
instead of whichever ran last, and blocks (rather than single frames) keep one engine's
run from starting every frame with caches the previous engine evicted. Between blocks the machine
rests for :data:`REST_S`, so that each engine's block starts on idle cores: ONNX Runtime's worker
threads spin-wait for their next run by default, and on 2 cores the first frame of the engine after
an ORT block ran at half speed (benchmarks/rest_between_engines.py: a sparse vtest frame took 40 ms
right after ORT frames, 21 ms after a 0.1 s rest, 20.5 ms after a frame of its own).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from passrt.errors import redact
from passrt.metrics import LOW_SCORE, Agreement
from passrt.models import load_model, view_of
from passrt.runtime.backends import open_backend, open_stages
from passrt.runtime.frames import stream_frames
from passrt.runtime.timing import percentiles

REST_S = 0.1  # idle time between two engines' blocks (see the module docstring)


@dataclass
class Entry:
    backend: object
    latency_ms: list = field(default_factory=list)
    active: list = field(default_factory=list)
    macs_exec: list = field(default_factory=list)
    detections: list = field(default_factory=list)  # (boxes, scores) at the display threshold, per frame
    agreement: Agreement = field(default_factory=Agreement)
    skip: list = field(default_factory=list)  # R_p per frame (0 for dense engines and refresh frames)
    gate_macs: list = field(default_factory=list)
    macs_dense: float = 0.0
    stage_ms: dict = field(default_factory=dict)  # per-frame stage timings an engine reports (TensorRT)


def machine(device: str = "cpu") -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    import onnxruntime

    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "python": platform.python_version(), "os": platform.platform(), "packages": dependency_versions()}
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info


def dependency_versions() -> dict:
    """The installed version of every package passrt depends on (pyproject's dependencies and extras)."""
    from importlib import metadata

    names = ["passrt"]
    try:
        requires = metadata.requires("passrt") or []
    except metadata.PackageNotFoundError:  # run from a source tree without installing
        requires = []
    for req in requires:
        name = req.split(";")[0].strip()
        for sep in "<>=!~[ (":
            name = name.split(sep)[0]
        names.append(name)
    out = {}
    for name in dict.fromkeys(names):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def run_benchmark(uri: str, model_name: str, policies: list = (), frames: int = 200,
                  warmup: int = 5, onnxruntime: bool = True, progress: bool = True, block: int = 10,
                  engines: list[str] = (), plugin: str | None = None, device: str = "cpu",
                  half: bool = False, score_threshold: float = 0.3, start: int = 0,
                  desc: str = "bench", track: str | None = None, dense_engine: str | None = "ort",
                  executors: list[str] = ("auto",), stop=None, cuda_graphs: bool = True) -> dict:
    """Measure dense PyTorch, (optionally) dense ONNX Runtime, each policy (:class:`~passrt.policies.PolicySpec`)
    and each TensorRT engine file in ``engines`` (labelled by its file name). ``device``/``half``: where and in
    which precision the PyTorch engines run (CUDA: dense is cuDNN, sparse is passrt's NHWC tile kernels); ``start``: the
    first frame; ``track``: also track every engine's detections with this tracker and score its tracks
    against the dense engine's (MOTA, IDF1, ID switches: :func:`~passrt.runtime.mot.tracking_agreement`);
    ``dense_engine``: what answers the sparse engines' dense frames on CPU ('ort' or None); ``executors``:
    each policy runs on each (labelled ``policy@executor`` when there are several); ``stop``: an Event-like
    object (``is_set()``): once set (SIGTERM/SIGINT in the CLI) the run ends after the current frame and the
    result covers the blocks every engine completed (``stopped_by`` names the signal); ``cuda_graphs``: CUDA
    graphs for the native executor on CUDA and TensorRT engines (False: eager launches). Agreement
    (:class:`~passrt.metrics.Agreement`) is against the dense PyTorch engine, whose detections at
    ``score_threshold`` are the ground truth."""
    from dataclasses import replace
    from pathlib import Path

    dtype = _check_device(device, half)
    if track:
        from passrt.runtime.tracking import Tracker

        Tracker(track)  # before any work: an unknown tracker or a missing extra fails at once
    spec = open_stages(load_model(model_name), dense_engine=dense_engine)
    trt = [open_backend(f"trt:{path}", spec, plugin=plugin, label=Path(path).name, cuda_graphs=cuda_graphs)
           for path in engines]  # before decoding: fail fast without TensorRT
    clip = stream_frames(uri, frames, start=start, block=block)
    first = [spec.preprocess(image).to(device, dtype) for image in clip.warmup(warmup)]
    if hasattr(spec.preprocess, "reset"):  # a preprocess with state (a held person crop) starts afresh
        spec.preprocess.reset()
    h, w = first[0].shape[2:]
    on_device = replace(spec, module=spec.module.to(device, dtype))
    backends = [open_backend("torch:dense", on_device, label="dense")]
    if onnxruntime and device == "cpu":
        backends.append(open_backend("ort", spec, first[0]))
    backends += [open_backend(p, on_device, dense_engine=dense_engine, executor=ex, cuda_graphs=cuda_graphs,
                              label=f"{p.label}@{ex}" if len(executors) > 1 else None)
                 for p in policies if p.name != "dense" for ex in executors]
    for b in trt:
        b.check_input(first[0].shape)
        if any(o.label == b.label for o in backends):  # two engines called alike, or one called like a policy
            b.label = str(b.path)
        backends.append(b)
    entries = [Entry(b, agreement=Agreement(score_threshold)) for b in backends]

    stopped = _stopped(stop)
    for e in entries:  # warm-up: allocators, oneDNN primitives, plans; then forget the state
        for x in first[:warmup]:
            if stopped():
                break
            e.backend(x)
        e.backend.reset()

    clock = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    bar = tqdm(total=clip.expected * len(entries), desc=desc, unit="frame", disable=not progress,
               file=sys.stderr)
    measured = 0
    preprocess_ms = []  # shared by every engine (a pose model's person detector runs here), timed apart
    for images in ([] if stopped() else clip.blocks()):
        prepared = []
        for image in images:
            t0 = _now()
            prepared.append(spec.preprocess(image))
            preprocess_ms.append((_now() - t0) * 1e3)
        views = [view_of(x) for x in prepared]  # where each input sits in its frame (a crop), or None
        tensors = [x.to(device, dtype) for x in prepared]
        # A block counts only once every engine has run all of it, so that a stop (SIGTERM) in the
        # middle leaves every engine measured on the same frames: the partial block is dropped.
        ran = []  # (entry, frame in block, latency ms, outputs on CPU, stats)
        for e in entries:
            for i, x in enumerate(tensors):
                if stopped():
                    break
                clock()
                t0 = _now()
                out = e.backend(x)
                clock()
                ran.append((e, i, (_now() - t0) * 1e3, _on_cpu(out), e.backend.stats()))
                bar.update()
            time.sleep(REST_S)
        if stopped():
            break
        done, measured = measured, measured + len(tensors)
        dense_out = [out for e, _, _, out, _ in ran if e is entries[0]]  # dense runs first: the reference
        for e, i, latency, out, st in ran:
            _account(e, entries[0], spec, out, dense_out[i], done + i, latency, st, (h, w), score_threshold,
                     views[i])
    bar.close()
    if measured == 0:  # stopped before a whole block was measured
        return {"machine": machine(device), "input": redact(uri), "model": model_name, "frames": 0, "start": start,
                "device": device, "policies": {}, "stopped_by": getattr(stop, "signal_name", None)}

    sparse_macs_dense = next((e.macs_dense for e in entries if e.macs_dense), None)
    result = {"machine": machine(device), "input": redact(uri), "model": model_name, "frames": measured, "start": start,
              "device": device, "dtype": str(dtype).removeprefix("torch."), "cuda_graphs": cuda_graphs,
              "resolution": [w, h], "clip_fps": clip.fps, "warmup_frames": warmup, "block_frames": block,
              # per frame, shared by all engines and not in their FPS (decoding is not timed either)
              "preprocess_ms_median": statistics.median(preprocess_ms), "policies": {}}
    if hasattr(spec.preprocess, "held"):  # a held person crop: how often it moved
        result["crop_moves"] = spec.preprocess.held.moves
    for e in entries:
        lat = e.latency_ms
        macs_exec = [m for m in e.macs_exec if m is not None]
        entry = {
            "fps_median": 1000.0 / statistics.median(lat),
            # trtexec's figures: throughput over the measured frames, latency min/mean/median/p90/p95/p99/max
            "throughput_fps": 1000.0 * len(lat) / sum(lat),
            "latency_ms": {"min": min(lat), "mean": statistics.fmean(lat), "max": max(lat),
                           **{f"p{q}": v for q, v in percentiles(lat, (50, 90, 95, 99)).items()}},
            "active_fraction": float(np.mean(e.active)),
            "macs_dense": sparse_macs_dense,
            # engines that report only their active fraction (TensorRT): the MAC-weighted fraction of dense
            "macs_executed": float(np.mean(macs_exec)) if macs_exec else
            (sparse_macs_dense * float(np.mean(e.active)) if sparse_macs_dense else None),
            # R_p, mean over frames (None where the engine does not report it, e.g. the op executor)
            "skip_rate": float(np.mean(e.skip)) if e.skip and None not in e.skip else None,
            "gate_macs": float(np.mean(e.gate_macs)),
            **e.agreement.summary(),  # agreement_ap50, agreement_ap50_display, output_error
            # (boxes, scores) per frame, or (persons, K, 3) keypoints for pose
            "detections_per_frame": float(np.mean([len(d[0]) if isinstance(d, tuple) else len(d)
                                                   for d in e.detections])) if e.detections else None,
            "per_frame": {"latency_ms": lat, "active_fraction": e.active},
        }
        # R_m: the share of dense MACs not executed (a policy's own MACs, e.g. gates, count as executed)
        entry["mac_reduction"] = 1.0 - entry["macs_executed"] / sparse_macs_dense \
            if entry["macs_executed"] and sparse_macs_dense else 0.0
        entry.update(e.backend.describe())
        if e.stage_ms:
            entry["stages_ms"] = {k.removesuffix("_ms"): statistics.median(v) for k, v in e.stage_ms.items()}
        result["policies"][e.backend.label] = entry
    if track:
        _add_tracking(result, entries, track, clip.fps or 30.0)
    if trt:
        from passrt.runtime.tensorrt_backend import tensorrt_machine

        result["machine"].update(tensorrt_machine())
    result["stopped_by"] = getattr(stop, "signal_name", None) if stopped() else None
    dense_fps = result["policies"]["dense"]["fps_median"]
    ort_fps = result["policies"].get("onnxruntime", {}).get("fps_median")
    for entry in result["policies"].values():
        entry["speedup_vs_dense"] = entry["fps_median"] / dense_fps
        if ort_fps:
            entry["speedup_vs_onnxruntime"] = entry["fps_median"] / ort_fps
    return result


def _account(e: Entry, dense: Entry, spec, out, dense_out, frame: int, latency: float, st: dict, size,
             score_threshold: float, view=None) -> None:
    """One engine's frame into its figures: latency, detections and agreement with the dense engine's."""
    e.latency_ms.append(latency)
    if spec.postprocess is not None and spec.task == "pose":
        kps = spec.postprocess(out, size, view=view).points
        e.detections.append(kps)
        e.agreement.add_keypoints(kps, dense.detections[frame])
    elif spec.postprocess is not None:  # a model with no task head: raw outputs only
        det = spec.postprocess(out, size, score_threshold=LOW_SCORE)
        shown = det.scores >= score_threshold
        e.detections.append((det.boxes[shown], det.scores[shown]))
        e.agreement.add_detections(det.boxes, det.scores, dense.detections[frame][0])
    e.agreement.add_outputs(out, dense_out)
    e.active.append(st.get("active_fraction", 1.0))
    e.macs_exec.append(st.get("macs_executed"))
    e.skip.append(st.get("skip_rate", 0.0))  # dense engines skip nothing; None: not reported
    e.gate_macs.append(st.get("gate_macs", 0.0))
    e.macs_dense = st.get("macs_dense", e.macs_dense)
    for k, v in st.items():
        if k.endswith("_ms"):
            e.stage_ms.setdefault(k, []).append(v)


def _stopped(stop):
    """``stop.is_set`` (an Event-like object, e.g. the CLI's SIGTERM/SIGINT flag), or never."""
    return stop.is_set if stop is not None else (lambda: False)


def _add_tracking(result: dict, entries: list, track: str, fps: float) -> None:
    """Each engine's detections (at the display threshold) through a fresh tracker; the dense engine's
    tracks are the ground truth of everyone's MOTA / IDF1 / ID switches."""
    from passrt.runtime.mot import tracking_agreement
    from passrt.runtime.tracking import track_sequence

    truth = track_sequence(track, entries[0].detections, fps)
    result["tracker"] = track
    for e in entries:
        tracks = truth if e is entries[0] else track_sequence(track, e.detections, fps)
        result["policies"][e.backend.label]["tracking"] = tracking_agreement(truth, tracks)


def _check_device(device: str, half: bool):
    from passrt.errors import PassrtError

    if device not in ("cpu", "cuda"):
        raise PassrtError(f"--device must be cpu or cuda, got '{device}'")
    if device == "cuda" and not torch.cuda.is_available():
        raise PassrtError("--device cuda: this PyTorch sees no CUDA GPU (torch.cuda.is_available() is False)")
    if half and device != "cuda":
        raise PassrtError("--half needs --device cuda (fp16 is a GPU format; on CPU it is slower than fp32)")
    return torch.float16 if half else torch.float32


def _on_cpu(out):
    """Model outputs as CPU float32 for decoding (GPU / fp16 engines)."""
    if isinstance(out, torch.Tensor):
        return out.float().cpu()
    if isinstance(out, (list, tuple)):
        return type(out)(_on_cpu(o) for o in out)
    return out


def _now() -> float:
    return time.perf_counter()


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def _per_output(values) -> str:
    """One figure per output, '/'-separated (a model with no task head is judged on them)."""
    return "/".join(f"{v:.3g}" for v in values) or "-"


def format_table(result: dict) -> str:
    rows = [("engine", "FPS", "p50 ms", "p95 ms", "x dense", "x ORT", "active", "R_p", "R_m", "MACs/exec",
             "AP50", "AP50@thr", "PCK", "max|err|", "mean|err|")]
    tracking = "tracker" in result
    if tracking:
        rows[0] += ("MOTA", "IDF1", "IDsw")
    for label, e in result["policies"].items():
        ratio = e["macs_dense"] / e["macs_executed"] if e.get("macs_executed") else float("nan")
        rows.append((label, f"{e['fps_median']:.1f}", f"{e['latency_ms']['p50']:.1f}",
                     f"{e['latency_ms']['p95']:.1f}", f"{e['speedup_vs_dense']:.2f}",
                     f"{e['speedup_vs_onnxruntime']:.2f}" if "speedup_vs_onnxruntime" in e else "-",
                     f"{e['active_fraction']:.3f}", _fmt(e["skip_rate"]), f"{e['mac_reduction']:.3f}",
                     f"{ratio:.2f}", _fmt(e.get("agreement_ap50")), _fmt(e.get("agreement_ap50_display")),
                     _fmt(e.get("agreement_pck")),
                     _per_output(e["output_error"]["max"]), _per_output(e["output_error"]["mean"])))
        if tracking:
            t = e["tracking"]
            rows[-1] += (f"{t['mota']:.3f}", f"{t['idf1']:.3f}", str(t["num_switches"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def pyplot():
    """matplotlib's pyplot on the file-only backend, or a one-line error (it is an optional extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        from passrt.errors import PassrtError
        raise PassrtError("--plot needs matplotlib: pip install matplotlib") from None
    return plt


def plot(result: dict, path: str) -> None:
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    for label, e in result["policies"].items():
        ax1.plot(e["per_frame"]["latency_ms"], label=label, lw=1)
        ax2.plot(e["per_frame"]["active_fraction"], label=label, lw=1)
    ax1.set_ylabel("latency (ms)")
    ax1.set_yscale("log")
    ax2.set_ylabel("active fraction (MAC-weighted)")
    ax2.set_xlabel("frame")
    ax1.legend(fontsize=8)
    w, h = result["resolution"]
    ax1.set_title(f"{result['model']} on {os.path.basename(result['input'])} at {w}x{h}, {result['machine']['cores']} cores")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
