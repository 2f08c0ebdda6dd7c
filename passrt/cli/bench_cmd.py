"""`passrt bench`: FPS, latency, active fraction and detection agreement of every policy."""

from __future__ import annotations

import sys

from passrt.cli.args import ModelArgs, PluginArgs, PolicyArgs, SourceArgs, non_negative, positive

SOURCE, MODEL, PLUGIN = SourceArgs(), ModelArgs(), PluginArgs("the library each engine was built with, ")
POLICIES = PolicyArgs("dense,regiondrop,exact,layerwise", many=True)


def register(sub) -> None:
    p = sub.add_parser(
        "bench", help="measure policies against the dense engines on the same frames",
        description="Decode frames once, then run dense PyTorch, dense ONNX Runtime, every policy and every "
                    "TensorRT engine (--engine) on the same frames, taking turns in blocks of 10 frames (a 0.1 s rest "
                    "between engines), after a warm-up. Reports median FPS, latency percentiles, active fraction, "
                    "MACs, AP@0.5 agreement with the dense PyTorch detections and the raw-output error against "
                    "dense PyTorch (per output: for a model file with no task head, e.g. an .onnx file, the measure "
                    "of agreement).")
    SOURCE.add_to(p)
    MODEL.add_to(p)
    POLICIES.add_to(p)
    p.add_argument("--frames", type=int, default=200, help="frames to measure (default 200)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up frames per engine, not measured")
    p.add_argument("--no-onnxruntime", action="store_true", help="skip the dense ONNX Runtime engine")
    p.add_argument("--dense-engine", choices=("ort", "none"), default="ort",
                   help="what answers the sparse engines' dense frames (the first, scene cuts, a moving camera) on "
                        "CPU: ONNX Runtime, or passrt itself (default: ort)")
    p.add_argument("--executors", default="auto",
                   help="run every policy on each of these executors, separated by commas (auto, native, reference, "
                        "op), labelled policy@executor when there are several (default: auto)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="run the PyTorch engines here: on cuda, dense is cuDNN and the sparse policies run passrt's "
                        "NHWC tile kernels with the masks on the GPU, each frame a CUDA graph; "
                        "ONNX Runtime (CPU) is then left out (default: cpu)")
    p.add_argument("--no-cuda-graphs", action="store_true",
                   help="launch every kernel (native executor on cuda) and TensorRT enqueue eagerly instead of "
                        "replaying each frame as a CUDA graph (to measure what the graphs save)")
    p.add_argument("--half", action="store_true", help="fp16 model and frames (with --device cuda)")
    p.add_argument("--engine", action="append", default=[], metavar="ENGINE",
                   help="also run this TensorRT engine (from `passrt build`, for this model and the clip's frame "
                        "size), labelled by its file name; repeat for several")
    PLUGIN.add_to(p)
    p.add_argument("--track", choices=("bytetrack", "ocsort", "sort"),
                   help="also track each engine's detections and report MOTA, IDF1 and ID switches of its tracks "
                        "against the dense engine's tracks as ground truth (needs the 'track' extra)")
    p.add_argument("--json", metavar="PATH", help="write all results (and per-frame series) here")
    p.add_argument("--plot", metavar="PNG", help="plot latency and active fraction per frame (needs matplotlib)")
    p.epilog = ("SIGTERM (docker stop, systemd) and SIGINT (Ctrl-C) end the bench after the current frame: the "
                "results cover the blocks of frames that every engine completed (the same frames for all), are "
                "printed and written to --json with \"stopped_by\"; exit status 143 after SIGTERM, 130 after "
                "SIGINT (fewer frames than asked), a second signal aborts.")
    p.set_defaults(func=main)


def main(args) -> int:
    from passrt.errors import redact
    from passrt.metrics import LOW_SCORE
    from passrt.runtime.bench import format_table, plot, run_benchmark

    if PLUGIN.parse(args) and not args.engine:
        from passrt.errors import PassrtError
        raise PassrtError("--plugin goes with --engine (a TensorRT engine)")
    from passrt.runtime.outputs import check_outputs

    positive("--frames", args.frames)
    non_negative("--warmup", args.warmup)
    uri = SOURCE.parse(args)
    # before decoding and minutes of measuring: results that cannot be written are lost results
    check_outputs([uri], {"--json": args.json, "--plot": args.plot})
    from passrt.runtime.shutdown import StopOnSignal

    executors = _executors(args.executors)
    with StopOnSignal() as stop:  # SIGTERM/SIGINT: stop after the current frame, keep what was measured
        result = run_benchmark(uri, MODEL.parse(args), POLICIES.parse(args), frames=args.frames,
                               warmup=args.warmup, onnxruntime=not args.no_onnxruntime,
                               progress=sys.stderr.isatty(), engines=args.engine, plugin=PLUGIN.parse(args),
                               device=args.device, half=args.half, track=args.track,
                               dense_engine=None if args.dense_engine == "none" else args.dense_engine,
                               executors=executors, stop=stop, cuda_graphs=not args.no_cuda_graphs)
    result["command"] = redact("passrt " + " ".join(sys.argv[1:]))
    if result["frames"] == 0:  # stopped before one block was measured: nothing to tabulate
        if args.json:
            from passrt.runtime.sinks import JsonSink

            JsonSink(args.json).write(result)
        print(f"passrt: stopped by {result['stopped_by']} before any frame was measured", file=sys.stderr)
        return _stop_status(result["stopped_by"])
    w, h = result["resolution"]
    where = (f"{result['machine']['gpu']} ({result['dtype']})" if args.device == "cuda" else
             f"{result['machine']['cpu']}, {result['machine']['torch_threads']} threads")
    print(f"{result['model']} on {result['input']} ({w}x{h}), {result['frames']} frames, {where}")
    if "tensorrt" in result["machine"]:
        print(f"TensorRT {result['machine']['tensorrt']} on {result['machine']['gpu']}")
    print(format_table(result))
    print("active: executed/dense MACs; R_p: share of each conv's output skipped, mean over convs and frames; "
          "R_m: share of dense MACs not executed (gates count as executed); AP50: AP@0.5 of the detections "
          f"ranked down to score {LOW_SCORE} against the dense ones at the display threshold; AP50@thr: the "
          "same with only the detections at the display threshold; max|err|, mean|err|: |engine - dense| of "
          "the raw outputs, max and mean over frames, one figure per output ('/'-separated); a model with "
          "no task head (an .onnx file, a Darknet cfg without yolo layers) has no AP columns; PCK (pose): share of the dense model's visible keypoints "
          "within 5% of the person's size")
    if args.json:
        from passrt.runtime.sinks import JsonSink

        JsonSink(args.json).write(result)
    if args.plot:
        plot(result, args.plot)
    if result["stopped_by"]:
        print(f"passrt: stopped by {result['stopped_by']} after {result['frames']} of {args.frames} frames; the "
              "results above cover those frames", file=sys.stderr)
        return _stop_status(result["stopped_by"])
    return 0


def _stop_status(signal_name: str | None) -> int:
    """A bench cut short measured fewer frames than asked: the shell's status for the signal (128 + its
    number: 143 for SIGTERM, 130 for SIGINT), so that a script notices, with the results still written."""
    import signal

    return 128 + signal.Signals[signal_name].value if signal_name else 1


def _executors(text: str) -> list[str]:
    from passrt.engine.sparse_model import EXECUTORS
    from passrt.errors import PassrtError

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in EXECUTORS]
    if unknown or not names:
        raise PassrtError(f"--executors: unknown executor '{(unknown or [text])[0]}'; choose from {', '.join(EXECUTORS)}")
    return names
