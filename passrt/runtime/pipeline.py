"""`passrt run`'s pipeline: source -> preprocess -> engine -> postprocess -> sinks.

Capture runs in its own thread behind a bounded queue (drops the oldest frame for live
sources, never for files); every stage is timed per frame. A stop request (``stop``, set by
SIGTERM/SIGINT in the CLI) ends the loop after the current frame; a write error ends it too.
Either way the video is closed (playable) and a summary is returned, with ``stopped_by`` or
``error`` saying why it ended early.

Several inputs run in one process on one model (one copy of the weights, its plans shared:
``new_stream()``), each with its own capture thread, caches, policy state, timers and tracker;
the streams take turns, one frame each, and the output shows them tiled. With ``batch`` the frames of one
size run together: the dense engine in one forward, a sparse engine's streams with one kernel call per
step over all their active tiles (each stream keeps its caches, masks and refreshes).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

import cv2
import numpy as np

from passrt.errors import PassrtError, redact
from passrt.models import view_of
from passrt.runtime.backends import open_with_model, policy_name
from passrt.runtime.capture import CaptureThread
from passrt.runtime.draw import (TileHeat, draw_detections, draw_heatmap, draw_keypoints, draw_overlay, draw_region,
                                 draw_tracks)
from passrt.runtime.sinks import DisplaySink, VideoFileSink
from passrt.runtime.sources import open_source
from passrt.runtime.tegrastats import PowerMonitor
from passrt.runtime.timing import RollingFps, StageTimer, trtexec_summary


DEFAULT_MODEL = "ssdlite-pedestrian"


class Pipeline:
    """``uris``: one source or a list of them (several streams). ``backend``: a backend spec
    (:func:`~passrt.runtime.backends.open_backend`: a policy spec such as 'regiondrop' or a
    :class:`~passrt.policies.PolicySpec`, 'ort', or 'trt:ENGINE'). ``model``: default
    ssdlite-pedestrian; a TensorRT engine runs the model it was exported from (its sidecar says), which
    then picks pre- and postprocessing."""

    def __init__(self, uris, backend="regiondrop", model: str | None = None, output: str | None = None,
                 display: bool = True, show_tiles: bool = False, score_threshold: float = 0.3,
                 max_frames: int | None = None, plugin: str | None = None, guard: int | None = None,
                 guard_target: float = 0.98, reconnect_timeout: float | None = None,
                 track: str | None = None, tracks: str | None = None, loop: int = 0,
                 snapshot: str | None = None, snapshot_every: int = 100, tiles_layer: str = "0",
                 tiles_window: int = 30, capture=None, dense_engine: str | None = "ort", batch: bool | None = None):
        """``guard``: hold the sparse engine to the dense model every ``guard`` frames
        (:mod:`passrt.runtime.guard`), at ``guard_target`` AP@0.5 agreement. ``track``: a tracker name
        (:mod:`passrt.runtime.tracking`); ``tracks``: write its tracks here (MOTChallenge text; with
        several streams one file each, :func:`tracks_path`). ``max_frames``: per stream. ``loop``: replay
        file inputs (:func:`~passrt.runtime.sources.open_source`). ``snapshot``: a directory for a PNG of
        the annotated (tiled) frame every ``snapshot_every`` frames and of the last one. ``show_tiles``: a
        heatmap of how often each tile of layer ``tiles_layer`` was recomputed over about ``tiles_window``
        frames (:class:`~passrt.runtime.draw.TileHeat`; 1: the current frame's tiles). ``dense_engine``:
        what answers a sparse engine's dense frames on CPU ('ort' or None, :func:`open_backend`). ``batch``:
        run the streams' frames of one size together (the backend's ``batcher``: one forward of the dense
        model; a sparse engine's kernels once per step for all streams' active tiles); None: the engine's
        default (``batch_by_default``: on where measured faster, benchmarks/RESULTS.md "Several streams"),
        with several inputs."""
        self.uris = [uris] if isinstance(uris, (str, int)) else list(uris)
        # Open the window first: a missing display should fail before any work is done.
        self.display = DisplaySink("passrt") if display else None
        self.backend, self.spec = open_with_model(backend, model, DEFAULT_MODEL, plugin, dense_engine)
        if guard:
            if len(self.uris) > 1:
                raise PassrtError("--guard runs with one input for now (it holds one stream's engine to dense)")
            self.backend = _guarded(self.backend, self.spec, guard, guard_target, score_threshold)
        if len(self.uris) > 1 and not hasattr(self.backend, "new_stream"):
            raise PassrtError(f"several inputs need passrt's PyTorch engine (a policy); '{self.backend.label}' "
                              "serves one stream")
        if batch and not hasattr(self.backend, "batcher"):
            raise PassrtError(f"--batch-streams batches passrt's PyTorch engine (a policy); '{self.backend.label}' "
                              "runs one stream per call")
        self.batch_asked = bool(batch)  # asked for: a stream that cannot batch gets a line saying why
        if batch is None:
            batch = len(self.uris) > 1 and getattr(self.backend, "batch_by_default", False)
        self.batch = batch
        self.backends = [self.backend] + [self.backend.new_stream() for _ in self.uris[1:]]
        self.batcher = self.backend.batcher(self.backends) if batch else None
        self.policy = policy_name(self.backend)
        self.output, self.show_tiles = output, show_tiles
        self.score_threshold, self.max_frames = score_threshold, max_frames
        self.reconnect_timeout = reconnect_timeout
        self.track, self.tracks_path = track, tracks
        self.loop, self.snapshot, self.snapshot_every = loop, snapshot, snapshot_every
        self.tiles_layer, self.tiles_window, self.capture_options = tiles_layer, tiles_window, capture
        self.render = bool(output or display or snapshot)
        if track:
            from passrt.runtime.tracking import Tracker

            Tracker(track)  # fail now (unknown name, extra not installed), not at the first frame

    @property
    def uri(self):
        return self.uris[0]

    def run(self, live: TextIO | None = sys.stderr, stop=None) -> dict:
        """``stop``: an Event-like object (``is_set()``); once set, the run ends after the current frame
        (the CLI sets it on SIGTERM/SIGINT). The summary's ``error`` holds a write or source error that
        ended the run. One stream: the summary of that stream; several: ``streams`` holds each one's."""
        streams: list[_Stream] = []
        writer, error, start, last_print = None, None, time.perf_counter(), 0.0
        shown, last_image = 0, None
        power = PowerMonitor()  # tegrastats on a Jetson; nothing elsewhere
        until = stop.is_set if stop is not None else None
        try:  # a source that cannot be opened is the user's error: report it, nothing ran
            for i, (uri, backend) in enumerate(zip(self.uris, self.backends)):
                streams.append(self._open(i, uri, backend, until))
        except BaseException:
            for st in streams:
                st.close()
            raise
        try:
            power.__enter__()
            while not all(st.done for st in streams):
                self._round([st for st in streams if not st.done])
                if not any(st.new for st in streams):
                    continue
                if self.render:
                    image = _tile([st.image for st in streams])
                    shown += 1
                    if self.snapshot and (shown == 1 or shown % self.snapshot_every == 0):
                        _snapshot(self.snapshot, shown, image)
                    last_image = image
                    if self.output:
                        if writer is None:
                            h, w = image.shape[:2]
                            writer = VideoFileSink(self.output, streams[0].source.fps or 25.0, (w, h))
                        writer.write(image)
                    if self.display and not self.display.show(image):
                        break
                now = time.perf_counter()
                if live is not None and (now - last_print > 0.5 or sum(st.frames for st in streams) == 1):
                    last_print = now
                    live.write(self._status(streams) + ("\r" if live.isatty() else "\n"))
                    live.flush()
        except PassrtError as e:  # a full disk, a source gone for good: end like a stop, then report it
            error = e
        finally:
            power.__exit__(None, None, None)
            if self.snapshot and last_image is not None and shown % self.snapshot_every and error is None:
                try:
                    _snapshot(self.snapshot, shown, last_image)  # the last frame, whatever ended the run
                except PassrtError as e:
                    error = e
            for st in streams:
                error = st.close() or error
            if writer is not None:
                try:
                    writer.close()
                except PassrtError as e:
                    error = error or e
            if self.display is not None:
                self.display.close()
        elapsed = time.perf_counter() - start
        per_stream = [st.summary(elapsed) for st in streams]
        if self.batch:  # where batching could not apply, the summary and the final lines say why
            for st, p in zip(streams, per_stream):
                reason = self.backend.unbatched(st.backend) if st.frames else "no frame"
                p["batched"] = reason is None
                if reason is not None:
                    p["unbatched_because"] = reason
        if len(self.uris) == 1:
            summary = {"model": self.spec.name, "policy": self.policy, **per_stream[0]}
        else:
            summary = {"model": self.spec.name, "policy": self.policy, "inputs": [p["input"] for p in per_stream],
                       "frames": sum(p["frames"] for p in per_stream),
                       "fps": sum(p["fps"] for p in per_stream), "batched": self.batch, "streams": per_stream}
        summary["stopped_by"] = getattr(stop, "signal_name", None) if stop is not None and stop.is_set() else None
        if (energy := power.summary(summary["frames"])) is not None:
            summary["power"] = energy
        if error is not None:
            summary["error"] = redact(str(error))
        if live is not None and (error is None or summary["frames"]):  # an error before any frame: its line alone
            self._final(live, summary, per_stream)
        return summary

    # ---- one stream -----------------------------------------------------------------
    def _open(self, index: int, uri, backend, until) -> "_Stream":
        source = open_source(uri, reconnect_timeout=self.reconnect_timeout, loop=self.loop,
                             options=self.capture_options)
        # a preprocess with state (a pose model's held person crop) gets its own for each stream
        own = self.spec.preprocess.new_stream() if index and hasattr(self.spec.preprocess, "new_stream") \
            else self.spec.preprocess
        st = _Stream(index, source, backend, preprocess=own, heat=TileHeat(self.tiles_window))
        if self.track:
            from passrt.runtime.mot import MotWriter
            from passrt.runtime.tracking import Tracker

            st.tracker = Tracker(self.track, frame_rate=source.fps or 30.0)
            if self.tracks_path:
                st.track_writer = MotWriter(tracks_path(self.tracks_path, index, len(self.uris)))
        st.capture = CaptureThread(source)
        st.frames_iter = st.capture.frames(until=until)
        return st

    def _round(self, streams: list) -> None:
        """One frame of each stream through the engine: one call per stream, or with ``batch`` one batched call
        per input shape for all of them (each stream's engine time is then the whole batched call: its frame
        waited that long)."""
        ready = []
        for st in streams:
            st.new = False
            frame = next(st.frames_iter, None)
            if frame is None:
                st.done = True
                continue
            with st.timer.stage("preprocess"):
                ready.append((st, frame, st.preprocess(frame.image)))
        if not self.batch:
            for st, frame, x in ready:
                with st.timer.stage("engine"):
                    out = st.backend(x)
                self._finish(st, frame, out, view_of(x))
            return
        groups: dict = {}
        for item in ready:  # streams of one resolution share a call; another resolution is another call
            groups.setdefault(tuple(item[2].shape), []).append(item)
        for group in groups.values():
            t0 = time.perf_counter()
            outs = self.batcher([x for _, _, x in group], [st.number_from_0 for st, _, _ in group])
            ms = (time.perf_counter() - t0) * 1e3
            for (st, frame, x), out in zip(group, outs):
                st.timer.add("engine", ms)
                self._finish(st, frame, out, view_of(x))

    def _finish(self, st: "_Stream", frame, out, view=None) -> None:
        """A frame's outputs through the task head and the tracker; ``st.image`` its rendering. ``view``:
        where the input sat in the frame when the preprocess cropped it (:func:`~passrt.models.view_of`)."""
        timer = st.timer
        h, w = frame.image.shape[:2]
        with timer.stage("postprocess"):
            extra = {"view": view} if view is not None else {}
            det = self.spec.postprocess(out, (h, w), score_threshold=self.score_threshold, **extra) \
                if self.spec.postprocess is not None else None  # no task head: nothing to draw
            tracked = None
            if st.tracker is not None and det is not None and self.spec.task == "detection":
                tracked = st.tracker.update(det.boxes, det.scores)
                st.track_ids.update(tracked[0].tolist())
                if st.track_writer is not None:
                    st.track_writer.write(st.frames, *tracked)
        st.view = view
        st.stats = st.backend.stats()
        for key in ("upload_ms", "infer_ms", "download_ms"):  # a TensorRT engine's own stages (GPU time)
            if key in st.stats:
                timer.record(key.removesuffix("_ms"), st.stats[key])
        st.active = st.stats.get("active_fraction", 1.0)
        st.active_sum += st.active
        st.rate = st.fps.tick()
        st.engine_ms = timer.last("engine")
        st.people = len(det) if det is not None else None
        st.index = frame.index
        if self.render:
            with timer.stage("sinks"):  # drawing; the tiled write is shared by the streams
                st.image = self._render(st, frame.image, det, tracked)
        timer.end_frame()
        st.frames += 1
        st.new = True
        if self.max_frames and st.frames >= self.max_frames:
            st.done = True

    def _status(self, streams) -> str:
        if len(streams) == 1:
            st = streams[0]
            agreement = st.stats.get("guard", {}).get("agreement_ap50")
            checked = f" | agreement {agreement:.3f}" if agreement is not None else ""
            found = f" | people {st.people:2d}" if st.people is not None else ""
            return (f"frame {st.index:5d} | {st.rate:5.1f} FPS | engine {st.engine_ms:6.1f} ms | "
                    f"active {st.active:6.1%}{found}{checked}")
        return " | ".join(f"#{st.number} {st.rate:4.1f} FPS {st.engine_ms:5.1f} ms {st.active:4.0%}"
                          + (" end" if st.done else "") for st in streams)

    def _final(self, live, summary, per_stream) -> None:
        for p in per_stream:
            label = f"#{per_stream.index(p) + 1} {p['input']}: " if len(per_stream) > 1 else ""
            live.write(f"\n{label}{p['frames']} frames, {p['fps']:.1f} FPS overall, engine p50 "
                       f"{p['stages_ms']['engine']['p50']:.1f} ms, mean active fraction "
                       f"{p['active_fraction_mean']:.1%}\n" if p["frames"] else f"\n{label}no frames\n")
        if len(per_stream) > 1:
            live.write(f"{summary['frames']} frames in all, {summary['fps']:.1f} FPS aggregate\n")
        for i, p in enumerate(per_stream):
            if "unbatched_because" in p and self.batch_asked:
                live.write(f"note: --batch-streams: stream #{i + 1} ran alone: {p['unbatched_because']}\n")
        if len(per_stream) == 1 and summary["frames"]:
            live.write("\n".join(trtexec_summary(summary["fps"], summary["stages_ms"])) + "\n")
        if "power" in summary:
            p = summary["power"]
            live.write(f"Power: {p['power_mean_w']:.2f} W mean, {p['energy_per_frame_j']:.3f} J/frame "
                       f"(mode {p['power_mode']})\n")

    def _render(self, st, image, det, tracked=None):
        tile_masks = getattr(st.backend, "tile_masks", None)  # optional in the backend protocol
        if self.show_tiles and tile_masks is not None:
            mask = _pick_layer({k: m for k, m in tile_masks().items() if m is not None}, self.tiles_layer)
            if mask is not None:
                shown = "this frame" if self.tiles_window == 1 else f"the last {self.tiles_window} frames"
                image = draw_heatmap(image, st.heat.update(mask.numpy()),
                                     legend=f"recomputed 0-100% of {shown}, layer {self.tiles_layer}")
        if tracked is not None:
            image = draw_tracks(image, tracked[1], tracked[0])
        elif det is not None and self.spec.task == "pose":
            if st.view is not None and st.view.side < max(image.shape[:2]):  # a crop, not the whole frame
                image = draw_region(image, st.view.x0, st.view.y0, st.view.side)
            image = draw_keypoints(image, det.points)
        elif det is not None:
            image = draw_detections(image, det.boxes, det.scores)
        prefix = f"#{st.number} " if len(self.uris) > 1 else ""
        found = f"  people {st.people}" if st.people is not None else ""
        return draw_overlay(image, [f"{prefix}{self.policy}  {st.rate:.1f} FPS  engine {st.engine_ms:.1f} ms",
                                    f"active {st.active:.1%}{found}"])


@dataclass
class _Stream:
    """One input's state: its source and capture, its engine (caches, policy state), timers, tracker."""

    number_from_0: int
    source: object
    backend: object
    preprocess: object = None  # BGR frame -> the engine's input (the model's, or its copy for this stream)
    view: object = None  # where the last input sat in its frame, when the preprocess crops (models.crop.View)
    capture: object = None
    frames_iter: object = None
    timer: StageTimer = field(default_factory=StageTimer)
    fps: RollingFps = field(default_factory=RollingFps)
    tracker: object = None
    track_writer: object = None
    heat: TileHeat | None = None  # --show-tiles: how often each tile was recomputed lately
    track_ids: set = field(default_factory=set)
    stats: dict = field(default_factory=dict)
    image: np.ndarray | None = None
    frames: int = 0
    active_sum: float = 0.0
    active: float = 1.0
    rate: float = 0.0
    engine_ms: float = 0.0
    people: int | None = 0  # None: the model has no detection head
    index: int = 0
    done: bool = False
    new: bool = False

    @property
    def number(self) -> int:
        return self.number_from_0 + 1

    def close(self) -> PassrtError | None:
        """Stop capturing, close the tracks file; a write error is returned, not raised (others still close)."""
        # A camera stuck inside read() may outlive stop(); closing it under that read
        # could crash OpenCV, so it is then left to the process exit.
        if self.capture is not None and self.capture.stop():
            self.source.close()
        if self.track_writer is not None:
            try:
                self.track_writer.close()
            except PassrtError as e:
                return e
        return None

    def summary(self, elapsed: float) -> dict:
        out = {
            "input": self.source.name, "frames": self.frames,
            "fps": self.frames / elapsed if elapsed > 0 else 0.0,
            "stages_ms": self.timer.summary(),
            "active_fraction_mean": self.active_sum / max(self.frames, 1),
            "dropped_frames": self.capture.dropped if self.capture is not None else 0,
            "corrupt_frames": self.source.corrupt_frames,
            "lost_frames": self.source.lost_frames, "reconnects": self.source.reconnects,
            "engine": {k: v for k, v in self.stats.items() if k != "layers"} if self.frames else {},
        }
        if self.tracker is not None:
            out["tracking"] = {"tracker": self.tracker.name, "tracks": len(self.track_ids),
                               "file": getattr(self.track_writer, "path", None)}
        return out


def tracks_path(path: str, index: int, streams: int) -> str:
    """With several streams, stream i's tracks go to PATH's name with '.i' before the suffix
    (tracks.txt -> tracks.1.txt, tracks.2.txt): one MOTChallenge file per sequence, as the format wants."""
    if streams == 1:
        return path
    from pathlib import Path

    p = Path(path)
    return str(p.with_name(f"{p.stem}.{index + 1}{p.suffix}"))


def _pick_layer(masks: dict, layer: str):
    """The tile mask of ``layer``: a position among the layers with masks (negative from the end) or a name."""
    if not masks:
        return None
    if layer in masks:
        return masks[layer]
    try:
        return list(masks.values())[int(layer)]
    except (ValueError, IndexError):
        raise PassrtError(f"--tiles-layer {layer}: no such layer; positions 0..{len(masks) - 1} or a name, e.g. "
                          f"{', '.join(list(masks)[:3])}") from None


def _snapshot(directory: str, frame: int, image: np.ndarray) -> None:
    from pathlib import Path

    path = Path(directory) / f"frame{frame:06d}.png"
    if not cv2.imwrite(str(path), image):
        raise PassrtError(f"cannot write snapshot {path} (disk full?)")


def _tile(images: list) -> np.ndarray:
    """The streams' latest images in a grid, each letterboxed into the first one's size."""
    if len(images) == 1:
        return images[0]
    h, w = next(im.shape[:2] for im in images if im is not None)
    cols = math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / cols)
    out = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, im in enumerate(images):
        if im is None:
            continue
        scale = min(w / im.shape[1], h / im.shape[0])
        size = (max(int(im.shape[1] * scale), 1), max(int(im.shape[0] * scale), 1))
        fitted = cv2.resize(im, size, interpolation=cv2.INTER_AREA) if size != (im.shape[1], im.shape[0]) else im
        r, c = divmod(i, cols)
        y, x = r * h + (h - size[1]) // 2, c * w + (w - size[0]) // 2
        out[y:y + size[1], x:x + size[0]] = fitted
    return out


def _guarded(backend, spec, every: int, target: float, score_threshold: float):
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
