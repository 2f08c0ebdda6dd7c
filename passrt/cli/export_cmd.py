"""`passrt export`: write a model as ONNX, dense or with PassSparseConv2d nodes for TensorRT."""

from __future__ import annotations

from pathlib import Path

from passrt.cli.args import ModelArgs, PolicyArgs
from passrt.options import parse_size

MODEL = ModelArgs()
POLICY = PolicyArgs("regiondrop", help="dense, regiondrop, or pass (with --gates FILE), optionally with parameters: "
                                       "'regiondrop:threshold=0.08'")


def register(sub) -> None:
    p = sub.add_parser(
        "export", help="write a model as ONNX (dense, or sparse with PassSparseConv2d nodes)",
        description="Export a model for one input size. '--policy dense' writes the model itself; "
                    "any other policy ('regiondrop', 'exact', 'layerwise', 'pass' with --gates) writes the sparse "
                    "engine: masks as standard ONNX ops, each conv as a PassSparseConv2d node (TensorRT plugin, "
                    "plugins/tensorrt), the per-frame state (the policy's references, layer caches) as explicit "
                    "inputs/outputs. See export/README.md.")
    MODEL.add_to(p)
    POLICY.add_to(p)
    p.add_argument("--input-size", default="576x768", metavar="HxW",
                   help="frame height x width the graph is built for (default: 576x768, vtest.avi's size)")
    p.add_argument("--output", "-o", metavar="MODEL.onnx", help="where to write the ONNX file (required unless --triton)")
    p.add_argument("--triton", metavar="DIR",
                   help="write a Triton Inference Server model repository here: DIR/NAME/config.pbtxt with the "
                        "sequence batcher's implicit state mapped to the graph's state inputs/outputs (one sequence "
                        "per camera), DIR/NAME/model.onnx, and DIR/NAME/1/ for the TensorRT plan (see docs/TRITON.md)")
    p.add_argument("--triton-name", metavar="NAME", help="model name in the repository (default passrt_MODEL_POLICY)")
    p.add_argument("--triton-instances", type=int, default=1, metavar="N",
                   help="model instances on the GPU (each serves one camera at a time; default 1)")
    p.add_argument("--opset", type=int, default=17,
                   help="ONNX opset (default 17; use 13 for TensorRT 8.0-8.2, i.e. JetPack 4.6)")
    p.add_argument("--verify", metavar="URI", nargs="?", const="vtest",
                   help="afterwards, run the graph (reference runner, no TensorRT needed) and the PyTorch engine "
                        "on frames of URI (default vtest) and print the largest difference")
    p.add_argument("--verify-frames", type=int, default=10, metavar="N", help="frames for --verify (default 10)")
    p.set_defaults(func=main)


def main(args) -> int:
    from passrt.export.onnx_export import check_output, export_model

    from passrt.cli.args import positive
    from passrt.errors import PassrtError

    policy = POLICY.parse(args)
    name, params = policy.name, policy.params
    size = parse_size(args.input_size)
    positive("--triton-instances", args.triton_instances)
    if args.triton:
        import re

        model_name = args.triton_name or re.sub(r"[^A-Za-z0-9_]", "_", f"passrt_{MODEL.parse(args)}_{name}")
        from passrt.export.triton import model_config_schema

        model_config_schema()  # tritonclient present: fail before the export, not after
        Path(args.triton).mkdir(parents=True, exist_ok=True)
        (Path(args.triton) / model_name / "1").mkdir(parents=True, exist_ok=True)
        out = Path(args.output) if args.output else Path(args.triton) / model_name / "model.onnx"
    elif args.output:
        out = Path(args.output)
    else:
        raise PassrtError("give --output MODEL.onnx (or --triton DIR for a Triton model repository)")
    check_output(out)
    print(f"exporting {MODEL.parse(args)} ({name}) for {size[0]}x{size[1]} frames ...", flush=True)
    summary = export_model(MODEL.parse(args), name, params, size, out, args.opset)
    mb = out.stat().st_size / 1e6
    if summary.format == "dense":
        print(f"wrote {out} ({mb:.1f} MB): dense, {summary.nodes} nodes")
    else:
        print(f"wrote {out} ({mb:.1f} MB): {summary.plugin_nodes} PassSparseConv2d nodes "
              f"({len(summary.plugin_layers)} layers), {summary.state_inputs} state inputs, {summary.nodes} nodes")
        if summary.fallback_layers:
            print(f"note: {len(summary.fallback_layers)} conv layers (transposed convs, or fused ops the plugin cannot "
                  f"express) run densely in the graph, kept on the active tiles: {', '.join(summary.fallback_layers)}")
    if args.verify:
        from passrt.runtime.verify import verify_export

        print(verify_export(out, args.verify, args.verify_frames).line())
    plugin = "" if summary.format == "dense" else " --plugin plugins/tensorrt/build/libpassrt_trt.so"
    if args.triton:
        from passrt.export.triton import write_repository

        model_dir = write_repository(out, args.triton, model_name, args.triton_instances)
        print(f"wrote Triton model repository {model_dir} (config.pbtxt checked with Triton's model-config schema)")
        print(f"next, on the device: passrt build {model_dir / 'model.onnx'}{plugin} -o {model_dir / '1' / 'model.plan'}"
              f"; then tritonserver --model-repository {args.triton} (with the plugin: docs/TRITON.md)")
        return 0
    print(f"next, on the device: passrt build {out}{plugin} -o {out.with_suffix('.engine')}")
    return 0
