"""`passrt run`'s pipeline: source -> preprocess -> engine -> postprocess -> sinks.

Capture runs in its own thread behind a bounded queue (drops the oldest frame for live
sources, never for files); every stage is timed per frame.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from passrt.runtime.backends import open_with_model, policy_name
from passrt.runtime.capture import CaptureThread
from passrt.runtime.draw import draw_detections, draw_keypoints, draw_overlay, draw_tile_mask
from passrt.runtime.sinks import DisplaySink, VideoFileSink
from passrt.runtime.sources import open_source
from passrt.runtime.timing import RollingFps, StageTimer


DEFAULT_MODEL = "ssdlite-pedestrian"


class Pipeline:
    """``backend``: a backend spec (:func:`~passrt.runtime.backends.open_backend`: a policy spec such as
    'regiondrop' or a :class:`~passrt.policies.PolicySpec`, 'ort', or 'trt:ENGINE'). ``model``: default
    ssdlite-pedestrian; a TensorRT engine runs the model it was exported from (its sidecar says), which
    then picks pre- and postprocessing."""

    def __init__(self, uri: str, backend="regiondrop", model: str | None = None, output: str | None = None,
                 display: bool = True, show_tiles: bool = False, score_threshold: float = 0.3,
                 max_frames: int | None = None, plugin: str | None = None, guard: int | None = None,
                 guard_target: float = 0.98):
        """``guard``: hold the sparse engine to the dense model every ``guard`` frames
        (:mod:`passrt.runtime.guard`), at ``guard_target`` AP@0.5 agreement."""
        # Open the window first: a missing display should fail before any work is done.
        self.display = DisplaySink("passrt") if display else None
        self.backend, self.spec = open_with_model(backend, model, DEFAULT_MODEL, plugin)
        if guard:
            self.backend = _guarded(self.backend, self.spec, guard, guard_target, score_threshold)
        self.policy = policy_name(self.backend)
        self.uri, self.output, self.show_tiles = uri, output, show_tiles
        self.score_threshold, self.max_frames = score_threshold, max_frames

    def run(self, live: TextIO | None = sys.stderr) -> dict:
        timer, fps = StageTimer(), RollingFps()
        writer, frames, active_sum, start = None, 0, 0.0, time.perf_counter()
        source = open_source(self.uri)
        capture = CaptureThread(source)
        last_print = 0.0
        try:
            for frame in capture:
                h, w = frame.image.shape[:2]
                with timer.stage("preprocess"):
                    x = self.spec.preprocess(frame.image)
                with timer.stage("engine"):
                    out = self.backend(x)
                with timer.stage("postprocess"):
                    det = self.spec.postprocess(out, (h, w), score_threshold=self.score_threshold) \
                        if self.spec.postprocess is not None else None  # no task head: nothing to draw
                stats = self.backend.stats()
                active = stats.get("active_fraction", 1.0)
                active_sum += active
                rate = fps.tick()
                engine_ms = timer.last("engine")
                with timer.stage("sinks"):
                    if self.output or self.display:
                        image = self._render(frame.image, det, rate, engine_ms, active)
                        if self.output:
                            if writer is None:
                                writer = VideoFileSink(self.output, source.fps or 25.0, (w, h))
                            writer.write(image)
                        if self.display and not self.display.show(image):
                            break
                timer.end_frame()
                frames += 1
                now = time.perf_counter()
                if live is not None and (now - last_print > 0.5 or frames == 1):
                    last_print = now
                    end = "\r" if live.isatty() else "\n"
                    agreement = stats.get("guard", {}).get("agreement_ap50")
                    checked = f" | agreement {agreement:.3f}" if agreement is not None else ""
                    found = f" | people {len(det):2d}" if det is not None else ""
                    live.write(f"frame {frame.index:5d} | {rate:5.1f} FPS | engine {engine_ms:6.1f} ms | "
                               f"active {active:6.1%}{found}{checked}{end}")
                    live.flush()
                if self.max_frames and frames >= self.max_frames:
                    break
        finally:
            # A camera stuck inside read() may outlive stop(); closing it under that read
            # could crash OpenCV, so it is then left to the process exit.
            if capture.stop():
                source.close()
            if writer is not None:
                writer.close()
            if self.display is not None:
                self.display.close()
        elapsed = time.perf_counter() - start
        summary = {
            "input": self.uri, "model": self.spec.name, "policy": self.policy, "frames": frames,
            "fps": frames / elapsed if elapsed > 0 else 0.0,
            "stages_ms": timer.summary(),
            "active_fraction_mean": active_sum / max(frames, 1),
            "dropped_frames": capture.dropped,
            "corrupt_frames": getattr(source, "corrupt_frames", 0),
            "engine": {k: v for k, v in stats.items() if k != "layers"} if frames else {},
        }
        if live is not None:
            stages = summary["stages_ms"]
            live.write(f"\n{frames} frames, {summary['fps']:.1f} FPS overall, engine p50 "
                       f"{stages['engine']['p50']:.1f} ms, mean active fraction "
                       f"{summary['active_fraction_mean']:.1%}\n" if frames else "\nno frames\n")
        return summary

    def _render(self, image, det, rate, engine_ms, active):
        tile_masks = getattr(self.backend, "tile_masks", None)  # optional in the backend protocol
        if self.show_tiles and tile_masks is not None:
            masks = [m for m in tile_masks().values() if m is not None]
            if masks:
                image = draw_tile_mask(image, masks[0].numpy())
        if self.spec.task == "pose" and det is not None:
            image = draw_keypoints(image, det.points)
        elif det is not None:
            image = draw_detections(image, det.boxes, det.scores)
        return draw_overlay(image, [f"{self.policy}  {rate:.1f} FPS  engine {engine_ms:.1f} ms",
                                    f"active {active:.1%}" + (f"  people {len(det)}" if det is not None else "")])



def _guarded(backend, spec, every: int, target: float, score_threshold: float):
    from passrt.errors import PassrtError
    from passrt.runtime.backends import TorchSparse, open_backend
    from passrt.runtime.guard import Guarded

    if not isinstance(backend, TorchSparse):
        raise PassrtError("--guard holds passrt's PyTorch sparse engine to the dense model; it does not apply to "
                          f"'{backend.label}' (a dense or TensorRT engine)")
    if spec.postprocess is None or spec.task != "detection":
        raise PassrtError(f"--guard holds detection agreement (AP@0.5); model '{spec.name}' is not a detector "
                          "passrt knows")
    dense = open_backend("torch:dense", spec)
    return Guarded(backend, dense, spec.postprocess, every, target, score_threshold)
