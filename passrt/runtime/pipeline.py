"""`passrt run`'s pipeline: source -> preprocess -> engine -> postprocess -> sinks.

Capture runs in its own thread behind a bounded queue (drops the oldest frame for live
sources, never for files); every stage is timed per frame. A stop request (``stop``, set by
SIGTERM/SIGINT in the CLI) ends the loop after the current frame; a write error ends it too.
Either way the video is closed (playable) and a summary is returned, with ``stopped_by`` or
``error`` saying why it ended early.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

from passrt.errors import PassrtError, redact
from passrt.runtime.backends import open_with_model, policy_name
from passrt.runtime.capture import CaptureThread
from passrt.runtime.draw import draw_detections, draw_overlay, draw_tile_mask, draw_tracks
from passrt.runtime.sinks import DisplaySink, VideoFileSink
from passrt.runtime.sources import open_source
from passrt.runtime.tegrastats import PowerMonitor
from passrt.runtime.timing import RollingFps, StageTimer, trtexec_summary


DEFAULT_MODEL = "ssdlite-pedestrian"


class Pipeline:
    """``backend``: a backend spec (:func:`~passrt.runtime.backends.open_backend`: a policy spec such as
    'regiondrop' or a :class:`~passrt.policies.PolicySpec`, 'ort', or 'trt:ENGINE'). ``model``: default
    ssdlite-pedestrian; a TensorRT engine runs the model it was exported from (its sidecar says), which
    then picks pre- and postprocessing."""

    def __init__(self, uri: str, backend="regiondrop", model: str | None = None, output: str | None = None,
                 display: bool = True, show_tiles: bool = False, score_threshold: float = 0.3,
                 max_frames: int | None = None, plugin: str | None = None, guard: int | None = None,
                 guard_target: float = 0.98, reconnect_timeout: float | None = None,
                 track: str | None = None, tracks: str | None = None):
        """``guard``: hold the sparse engine to the dense model every ``guard`` frames
        (:mod:`passrt.runtime.guard`), at ``guard_target`` AP@0.5 agreement. ``track``: a tracker name
        (:mod:`passrt.runtime.tracking`); ``tracks``: write its tracks here (MOTChallenge text)."""
        # Open the window first: a missing display should fail before any work is done.
        self.display = DisplaySink("passrt") if display else None
        self.backend, self.spec = open_with_model(backend, model, DEFAULT_MODEL, plugin)
        if guard:
            self.backend = _guarded(self.backend, self.spec, guard, guard_target, score_threshold)
        self.policy = policy_name(self.backend)
        self.uri, self.output, self.show_tiles = uri, output, show_tiles
        self.score_threshold, self.max_frames = score_threshold, max_frames
        self.reconnect_timeout = reconnect_timeout
        self.track, self.tracks_path = track, tracks
        if track:
            from passrt.runtime.tracking import Tracker

            Tracker(track)  # fail now (unknown name, extra not installed), not at the first frame

    def run(self, live: TextIO | None = sys.stderr, stop=None) -> dict:
        """``stop``: a threading.Event; once set, the run ends after the current frame (the CLI sets it on
        SIGTERM/SIGINT). The summary's ``error`` holds a write or source error that ended the run."""
        timer, fps = StageTimer(), RollingFps()
        writer, frames, active_sum, start = None, 0, 0.0, time.perf_counter()
        stats, error = {}, None
        source = open_source(self.uri, reconnect_timeout=self.reconnect_timeout)
        tracker = track_writer = None
        if self.track:
            from passrt.runtime.mot import MotWriter
            from passrt.runtime.tracking import Tracker

            tracker = Tracker(self.track, frame_rate=source.fps or 30.0)
            track_ids: set = set()
            if self.tracks_path:
                track_writer = MotWriter(self.tracks_path)
        capture = CaptureThread(source)
        last_print = 0.0
        power = PowerMonitor().__enter__()  # tegrastats on a Jetson; nothing elsewhere
        try:
            for frame in capture.frames(until=stop.is_set if stop is not None else None):
                h, w = frame.image.shape[:2]
                with timer.stage("preprocess"):
                    x = self.spec.preprocess(frame.image)
                with timer.stage("engine"):
                    out = self.backend(x)
                with timer.stage("postprocess"):
                    det = self.spec.postprocess(out, (h, w), score_threshold=self.score_threshold)
                    tracked = None
                    if tracker is not None:
                        tracked = tracker.update(det.boxes, det.scores)
                        track_ids.update(tracked[0].tolist())
                        if track_writer is not None:
                            track_writer.write(frames, *tracked)
                stats = self.backend.stats()
                for key in ("upload_ms", "infer_ms", "download_ms"):  # a TensorRT engine's own stages (GPU time)
                    if key in stats:
                        timer.record(key.removesuffix("_ms"), stats[key])
                active = stats.get("active_fraction", 1.0)
                active_sum += active
                rate = fps.tick()
                engine_ms = timer.last("engine")
                with timer.stage("sinks"):
                    if self.output or self.display:
                        image = self._render(frame.image, det, rate, engine_ms, active, tracked)
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
                    live.write(f"frame {frame.index:5d} | {rate:5.1f} FPS | engine {engine_ms:6.1f} ms | "
                               f"active {active:6.1%} | people {len(det.scores):2d}{checked}{end}")
                    live.flush()
                if self.max_frames and frames >= self.max_frames:
                    break
        except PassrtError as e:  # a full disk, a source gone for good: end like a stop, then report it
            error = e
        finally:
            power.__exit__(None, None, None)
            # A camera stuck inside read() may outlive stop(); closing it under that read
            # could crash OpenCV, so it is then left to the process exit.
            if capture.stop():
                source.close()
            for sink in (writer, track_writer):
                if sink is not None:
                    try:
                        sink.close()
                    except PassrtError as e:
                        error = error or e
            if self.display is not None:
                self.display.close()
        elapsed = time.perf_counter() - start
        summary = {
            "input": source.name, "model": self.spec.name, "policy": self.policy, "frames": frames,
            "fps": frames / elapsed if elapsed > 0 else 0.0,
            "stages_ms": timer.summary(),
            "active_fraction_mean": active_sum / max(frames, 1),
            "dropped_frames": capture.dropped,
            "corrupt_frames": source.corrupt_frames,
            "lost_frames": source.lost_frames, "reconnects": source.reconnects,
            "stopped_by": getattr(stop, "signal_name", None) if stop is not None and stop.is_set() else None,
            "engine": {k: v for k, v in stats.items() if k != "layers"} if frames else {},
        }
        if (energy := power.summary(frames)) is not None:
            summary["power"] = energy
        if tracker is not None:
            summary["tracking"] = {"tracker": self.track, "tracks": len(track_ids), "file": self.tracks_path}
        if error is not None:
            summary["error"] = redact(str(error))
        if live is not None:
            stages = summary["stages_ms"]
            live.write(f"\n{frames} frames, {summary['fps']:.1f} FPS overall, engine p50 "
                       f"{stages['engine']['p50']:.1f} ms, mean active fraction "
                       f"{summary['active_fraction_mean']:.1%}\n" if frames else "\nno frames\n")
            if frames:
                live.write("\n".join(trtexec_summary(summary["fps"], stages)) + "\n")
                if "power" in summary:
                    p = summary["power"]
                    live.write(f"Power: {p['power_mean_w']:.2f} W mean, {p['energy_per_frame_j']:.3f} J/frame "
                               f"(mode {p['power_mode']})\n")
        return summary

    def _render(self, image, det, rate, engine_ms, active, tracked=None):
        tile_masks = getattr(self.backend, "tile_masks", None)  # optional in the backend protocol
        if self.show_tiles and tile_masks is not None:
            masks = [m for m in tile_masks().values() if m is not None]
            if masks:
                image = draw_tile_mask(image, masks[0].numpy())
        if tracked is not None:
            image = draw_tracks(image, tracked[1], tracked[0])
        else:
            image = draw_detections(image, det.boxes, det.scores)
        return draw_overlay(image, [f"{self.policy}  {rate:.1f} FPS  engine {engine_ms:.1f} ms",
                                    f"active {active:.1%}  people {len(det.scores)}"])



def _guarded(backend, spec, every: int, target: float, score_threshold: float):
    from passrt.errors import PassrtError
    from passrt.runtime.backends import TorchSparse, open_backend
    from passrt.runtime.guard import Guarded

    if not isinstance(backend, TorchSparse):
        raise PassrtError("--guard holds passrt's PyTorch sparse engine to the dense model; it does not apply to "
                          f"'{backend.label}' (a dense or TensorRT engine)")
    dense = open_backend("torch:dense", spec)
    return Guarded(backend, dense, spec.postprocess, every, target, score_threshold)
