"""`passrt run`: stream a camera or a file through the sparse engine, show or record the result."""

from __future__ import annotations

import sys

from passrt.cli import args as cli_args


def register(sub) -> None:
    p = sub.add_parser(
        "run", help="run a detector on a camera or video with the sparse engine",
        description="Stream frames through the sparse engine: draw detections, show them in a "
                    "window and/or write a video, and print live FPS, latency and active fraction.")
    cli_args.add_source(p)
    cli_args.add_model(p)
    p.add_argument("--policy", default="regiondrop", help=cli_args.POLICY_HELP + " (default: regiondrop)")
    cli_args.add_policy_params(p)
    out = p.add_argument_group("output")
    out.add_argument("--output", "-o", metavar="VIDEO", help="write the annotated video here (.mp4 or .avi)")
    out.add_argument("--headless", action="store_true", help="do not open a window")
    out.add_argument("--show-tiles", action="store_true", help="tint the tiles recomputed on each frame")
    out.add_argument("--json", metavar="PATH", help="write a summary (timings, active fraction) here")
    out.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    out.add_argument("--score-threshold", type=float, default=0.3, help="detection score threshold (default 0.3)")
    p.set_defaults(func=main)


def main(args) -> int:
    from passrt.runtime.pipeline import Pipeline

    label, name, params = cli_args.parse_policy(args.policy, cli_args.common_params(args))
    pipeline = Pipeline(cli_args.source_of(args), args.model, name, params, output=args.output,
                        display=not args.headless, show_tiles=args.show_tiles,
                        score_threshold=args.score_threshold, max_frames=args.max_frames)
    summary = pipeline.run(live=sys.stderr)
    if args.json:
        from passrt.runtime.sinks import JsonSink

        JsonSink(args.json).write(summary)
    return 0
