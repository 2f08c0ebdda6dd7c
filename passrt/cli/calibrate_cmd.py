"""`passrt calibrate`: find the fastest operating point that keeps a target agreement on your footage."""

from __future__ import annotations

import sys

from passrt.cli.args import ModelArgs, PolicyArgs, SourceArgs, positive
from passrt.errors import PassrtError

SOURCE, MODEL = SourceArgs(), ModelArgs()
POLICY = PolicyArgs("regiondrop", help="the policy to calibrate: regiondrop, exact, layerwise or pass (--gates); "
                                       "parameters given here stay fixed")


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate", help="find the fastest policy parameters that keep a target agreement on your footage",
        description="Run dense PyTorch, dense ONNX Runtime and a grid of the policy's parameters side by side on "
                    "the first frames of the clip, measure agreement with the dense detections (AP@0.5, and AP@0.5 of "
                    "the detections at the display threshold) and speed, write the fastest point whose two agreement "
                    "figures both meet the target to a policy file (use it as --policy FILE everywhere), and check it "
                    "on the clip's last frames, which the search never saw.")
    SOURCE.add_to(p)
    MODEL.add_to(p)
    POLICY.add_to(p)
    p.add_argument("--target-agreement", type=float, default=0.99, metavar="AP",
                   help="agreement with the dense model to keep, both AP@0.5 and AP@0.5 at the display threshold "
                        "(default 0.99)")
    p.add_argument("--frames", type=int, default=150,
                   help="frames to use: the first 70%% to search, the last 30%% held out (default 150)")
    p.add_argument("--output", "-o", required=True, metavar="POLICY_JSON", help="write the policy file here")
    p.add_argument("--plot", metavar="PNG", help="plot agreement against speed-up (needs matplotlib)")
    p.set_defaults(func=main)


def main(args) -> int:
    from passrt.runtime.calibrate import calibrate, format_table, plot
    from passrt.runtime.sinks import JsonSink

    positive("--frames", args.frames)
    if not 0 < args.target_agreement <= 1:
        raise PassrtError(f"--target-agreement must be in (0, 1], got {args.target_agreement}")
    sink = JsonSink(args.output)  # before the work: a bad path fails now
    record = calibrate(SOURCE.parse(args), MODEL.parse(args), POLICY.parse(args), args.target_agreement,
                       args.frames, progress=sys.stderr.isatty())
    record["calibration"]["command"] = "passrt " + " ".join(sys.argv[1:])
    print(format_table(record))
    sink.write(record)
    print(f"wrote {args.output}: use it as --policy {args.output}")
    if args.plot:
        plot(record, args.plot)
    return 0
