"""`passrt build`: turn an exported ONNX file into a TensorRT engine, on the machine that runs it."""

from __future__ import annotations

from pathlib import Path

from passrt.cli.args import PluginArgs

PLUGIN = PluginArgs()


def register(sub) -> None:
    p = sub.add_parser(
        "build", help="build a TensorRT engine from an exported ONNX file (on the GPU machine)",
        description="Build a TensorRT engine from a `passrt export` ONNX file. Run it on the machine that will run "
                    "the engine: an engine only works with the TensorRT version and the GPU it was built for. Writes "
                    "ENGINE and ENGINE.json, a sidecar saying how it was built (TensorRT, GPU, plugin, precision, "
                    "the model's metadata), which `passrt run --engine` and `passrt bench --engine` read. Takes "
                    "minutes, more on a Jetson. Needs TensorRT's Python package.")
    p.add_argument("onnx", metavar="MODEL.onnx", help="the ONNX file written by `passrt export`")
    PLUGIN.add_to(p)
    p.add_argument("--fp16", action="store_true",
                   help="let TensorRT pick fp16 kernels where they are faster (inputs and outputs stay fp32); "
                        "ignored, with a warning, on GPUs without fast fp16")
    p.add_argument("--workspace", type=int, metavar="MB",
                   help="limit TensorRT's scratch memory for layer implementations, in MB (default: TensorRT's "
                        "own, which is all the GPU memory from TensorRT 8.4 on; 256 MB before 8.4)")
    p.add_argument("--output", "-o", metavar="ENGINE",
                   help="where to write the engine (default: MODEL.onnx's path with an .engine suffix)")
    p.set_defaults(func=main)


def main(args) -> int:
    from passrt.runtime.tensorrt_build import build_engine, sidecar_path

    out = Path(args.output) if args.output else Path(args.onnx).with_suffix(".engine")
    info = build_engine(args.onnx, out, plugin=PLUGIN.parse(args), fp16=args.fp16, workspace_mb=args.workspace)
    cc = info["compute_capability"]
    plugin = f", plugin {info['plugin']['path']}" if info["plugin"] else ""
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB) and {sidecar_path(out).name}: TensorRT {info['tensorrt']}, "
          f"{info['gpu'] or 'GPU unknown'}{f' (sm_{cc[0]}{cc[1]})' if cc else ''}, "
          f"{'fp16' if info['fp16'] else 'fp32'}{plugin}, built in {info['build_seconds']:.0f} s")
    print(f"next: passrt run --engine {out} --input vtest --headless   (or passrt bench --input vtest --engine {out})")
    return 0
