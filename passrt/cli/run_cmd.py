"""`passrt run`: stream a camera or a file through the sparse engine, show or record the result."""

from __future__ import annotations

import argparse
import sys

from passrt.cli.args import ModelArgs, PluginArgs, PolicyArgs, SourceArgs, positive, unit_interval
from passrt.errors import PassrtError

SOURCE, MODEL, POLICY, PLUGIN = SourceArgs(many=True), ModelArgs(default=None), PolicyArgs("regiondrop"), \
    PluginArgs("the library the engine was built with, ")


def register(sub) -> None:
    p = sub.add_parser(
        "run", help="run a detector on a camera or video with the sparse engine",
        description="Stream frames through the sparse engine (or a TensorRT engine: --engine): draw detections, "
                    "show them in a window and/or write a video, and print live FPS, latency and active fraction. "
                    "Several --input run in one process on one copy of the model, each stream with its own caches "
                    "and policy state, taking turns frame by frame; the window and video show them tiled.")
    SOURCE.add_to(p)
    MODEL.add_to(p)  # None: ssdlite-pedestrian, or the model an --engine was exported from
    POLICY.add_to(p)
    trt = p.add_argument_group("TensorRT (instead of the PyTorch engine)")
    trt.add_argument("--engine", metavar="ENGINE",
                     help="run this engine (from `passrt build`) on the GPU; the model, input size and policy are "
                          "the ones it was exported with (its ENGINE.json sidecar says which)")
    PLUGIN.add_to(trt)
    p.add_argument("--batch-streams", action=argparse.BooleanOptionalAction, default=None,
                   help="with several --input: run the streams' frames of one size together instead of one call per "
                        "stream: a sparse policy with one kernel call per layer over all streams' active tiles (each "
                        "stream keeps its own caches, masks and refreshes; outputs as alone), --policy dense in one "
                        "batched forward. Default: off (on an idle 2-core CPU batching measured 1.04-1.05x for "
                        "regiondrop and slower for dense: README 'Several cameras'). Streams of other sizes run alone (with "
                        "--batch-streams a line says so)")
    p.add_argument("--dense-engine", choices=("ort", "none"), default="ort",
                   help="what answers the dense frames (the first, scene cuts, a moving camera) on CPU: ONNX Runtime, "
                        "or passrt itself (default: ort)")
    g = p.add_argument_group("accuracy guard")
    g.add_argument("--guard", type=int, metavar="N",
                   help="every N frames also run the dense model, measure agreement with it, refresh when a frame falls "
                        "below --guard-target and tighten the operating point (the cost is in the FPS reported)")
    g.add_argument("--guard-target", type=float, default=0.98, metavar="AP",
                   help="AP@0.5 agreement the guard holds (default 0.98)")
    out = p.add_argument_group("output")
    out.add_argument("--output", "-o", metavar="VIDEO", help="write the annotated video here (.mp4 or .avi)")
    out.add_argument("--headless", action="store_true", help="do not open a window")
    out.add_argument("--show-tiles", action="store_true",
                     help="overlay a heatmap of how often each tile was recomputed over the last --tiles-window "
                          "frames (the paper's Figure 1; colour map inferno: dark = rarely, yellow = every frame)")
    out.add_argument("--tiles-window", type=int, default=30, metavar="N",
                     help="with --show-tiles: frames the heatmap averages over (exponentially; 1: only the tiles "
                          "recomputed on the current frame; default 30)")
    out.add_argument("--tiles-layer", metavar="LAYER", default="0",
                     help="with --show-tiles: the layer whose tiles are shown, by position among the sparse layers "
                          "(0: the first, -1: the last) or by name (default 0)")
    out.add_argument("--json", metavar="PATH", help="write a summary (timings, active fraction) here")
    out.add_argument("--snapshot", metavar="DIR", help="save the annotated frame as a PNG here every "
                                                        "--snapshot-every frames, and the last one")
    out.add_argument("--snapshot-every", type=int, default=100, metavar="N", help="(default 100)")
    out.add_argument("--track", choices=("bytetrack", "ocsort", "sort"),
                     help="track the detections (Roboflow trackers; needs the 'track' extra) and draw track IDs")
    out.add_argument("--tracks", metavar="TXT", help="with --track: write the tracks here, MOTChallenge text format "
                                                     "(frame,id,x,y,w,h,score,-1,-1,-1; frames from 1)")
    out.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames (at least 1; default: the "
                                                                 "whole file, or until stopped for a live source)")
    out.add_argument("--score-threshold", type=float, default=0.3, help="detection score threshold (default 0.3)")
    src = p.add_argument_group("sources")
    src.add_argument("--input-width", type=int, metavar="W", help="ask the camera for this width; frames of "
                                                                  "any source are scaled to it (jetson-utils' option)")
    src.add_argument("--input-height", type=int, metavar="H", help="the same for the height")
    src.add_argument("--input-rate", type=float, metavar="FPS", help="ask the camera for this frame rate; the frame rate of an image folder")
    src.add_argument("--input-codec", metavar="FOURCC", help="ask a V4L2 camera for this format, e.g. MJPG, YUYV")
    src.add_argument("--input-loop", type=int, default=0, metavar="N",
                     help="play a file input N more times, -1 forever (jetson-utils' --input-loop; default 0)")
    src.add_argument("--reconnect-timeout", type=float, metavar="S",
                     help="a live source that stops is reopened with backoff (0.5 s doubling to 10 s); give up after "
                          "S seconds without a frame (default: keep trying)")
    p.epilog = ("SIGTERM (docker stop, systemd) and SIGINT (Ctrl-C) end the run after the current frame: the video "
                "is closed playable and --json is written; exit status 0 after SIGTERM, 130 after SIGINT, a second "
                "signal aborts. A write error (full disk) ends the run with one line and status 2, the video "
                "written so far kept playable.")
    p.set_defaults(func=main)


def main(args) -> int:
    from passrt.runtime.outputs import check_outputs, check_video_name

    # Everything the user typed is checked before the model loads: a bad number or an unwritable
    # output must not cost a model load and a first frame, let alone a whole run.
    SOURCE.check(args)
    positive("--max-frames", args.max_frames)
    positive("--guard", args.guard)
    if not 0 < args.guard_target <= 1:
        raise PassrtError(f"--guard-target must be in (0, 1], got {args.guard_target}")
    unit_interval("--score-threshold", args.score_threshold)
    if args.reconnect_timeout is not None and args.reconnect_timeout <= 0:
        raise PassrtError(f"--reconnect-timeout must be a positive number of seconds, got {args.reconnect_timeout:g}")
    check_video_name("--output", args.output)
    uris = SOURCE.parse(args)
    if args.tracks and not args.track:
        raise PassrtError("--tracks needs --track (e.g. --track bytetrack)")
    from passrt.runtime.pipeline import tracks_path

    tracks = {f"--tracks (stream {i + 1})" if len(uris) > 1 else "--tracks":
              tracks_path(args.tracks, i, len(uris)) if args.tracks else None for i in range(len(uris))}
    positive("--snapshot-every", args.snapshot_every)
    positive("--tiles-window", args.tiles_window)
    positive("--input-width", args.input_width)
    positive("--input-height", args.input_height)
    if args.input_rate is not None and args.input_rate <= 0:
        raise PassrtError(f"--input-rate must be a positive frame rate, got {args.input_rate:g}")
    if args.input_codec is not None and not 1 <= len(args.input_codec) <= 4:
        raise PassrtError(f"--input-codec must be a FOURCC such as MJPG or YUYV, got '{args.input_codec}'")
    from passrt.runtime.sources import CaptureOptions

    capture = CaptureOptions(args.input_width, args.input_height, args.input_rate, args.input_codec)
    if args.input_loop < -1:
        raise PassrtError(f"--input-loop must be -1 (forever), 0 or more, got {args.input_loop}")
    check_outputs(uris, {"--output": args.output, "--json": args.json, **tracks}, {"--snapshot": args.snapshot})
    if args.engine:
        given = POLICY.given(args)
        if given:
            raise PassrtError(f"{', '.join(given)} cannot be used with --engine: the policy is fixed when the model is "
                              "exported (passrt export --policy ...)")
        backend = f"trt:{args.engine}"
        if args.show_tiles:
            print("passrt: warning: --show-tiles needs the PyTorch engine; ignored with --engine", file=sys.stderr)
    else:
        if args.plugin:
            raise PassrtError("--plugin goes with --engine (a TensorRT engine)")
        backend = POLICY.parse(args)

    from passrt.runtime.pipeline import Pipeline
    from passrt.runtime.shutdown import StopOnSignal

    with StopOnSignal() as stop:  # from here on SIGTERM/SIGINT stop the run cleanly
        pipeline = Pipeline(uris, backend, MODEL.parse(args), output=args.output,
                            display=not args.headless, show_tiles=args.show_tiles,
                            score_threshold=args.score_threshold, max_frames=args.max_frames,
                            plugin=PLUGIN.parse(args), guard=args.guard, guard_target=args.guard_target,
                            reconnect_timeout=args.reconnect_timeout, track=args.track, tracks=args.tracks,
                            loop=args.input_loop, snapshot=args.snapshot, snapshot_every=args.snapshot_every,
                            tiles_layer=args.tiles_layer, tiles_window=args.tiles_window, capture=capture,
                            dense_engine=None if args.dense_engine == "none" else args.dense_engine,
                            batch=args.batch_streams)
        if stop.is_set():  # stopped while the model loaded: nothing ran, nothing to write
            return 130 if stop.signal_name == "SIGINT" else 0
        summary = pipeline.run(live=sys.stderr, stop=stop)
    if args.json:
        from passrt.runtime.sinks import JsonSink

        try:
            JsonSink(args.json).write(summary)
        except PassrtError:
            if "error" not in summary:
                raise
            # the disk that failed the video fails the summary too: report the first failure, once
    if "error" in summary:
        raise PassrtError(summary["error"])
    if summary["stopped_by"]:
        print(f"passrt: stopped by {summary['stopped_by']} after {summary['frames']} frames", file=sys.stderr)
    return 130 if summary["stopped_by"] == "SIGINT" else 0
