"""Argument groups shared by the subcommands, and parsing of policy specs."""

from __future__ import annotations

import argparse

from passrt.errors import PassrtError

SOURCE_HELP = ("a video file, an asset name (vtest, bigbuckbunny, carphone: fetched on first use), "
               "/dev/videoN or v4l2:///dev/videoN, csi://N (Jetson CSI camera), rtsp://..., or a camera index")
POLICY_HELP = ("dense, exact, regiondrop, layerwise or pass (learned gates: --gates PATH), optionally with "
               "parameters: 'regiondrop:threshold=0.08,margin=1'")


def add_source(parser: argparse.ArgumentParser, required: bool = True) -> None:
    g = parser.add_argument_group("input")
    src = g.add_mutually_exclusive_group(required=required)
    src.add_argument("--input", "-i", metavar="URI", help=SOURCE_HELP)
    src.add_argument("--camera", type=int, metavar="N", help="camera index (same as --input N)")


def add_model(parser: argparse.ArgumentParser) -> None:
    from passrt.models import MODELS

    parser.add_argument_group("model").add_argument(
        "--model", default="ssdlite-pedestrian", help=f"model name (known: {', '.join(MODELS)})")


def add_policy_params(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("policy parameters (applied to every policy that takes them)")
    g.add_argument("--threshold", type=float, help="input change threshold, intensities in [0, 1]")
    g.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="any other policy parameter, e.g. --param margin=2 --param crossover=0.5")
    g.add_argument("--gates", metavar="PATH", help="gates file for the 'pass' policy (from `passrt train-gates`)")


def add_plugin(group, default_note: str = "") -> None:
    """--plugin: passrt's TensorRT plugin library, for engines/graphs with PassSparseConv2d layers."""
    group.add_argument("--plugin", metavar="PATH",
                       help="libpassrt_trt.so, for engines with PassSparseConv2d layers (default: $PASSRT_TRT_PLUGIN, "
                            f"{default_note}else plugins/tensorrt/build/libpassrt_trt.so)")


def source_of(args) -> str:
    return str(args.camera) if args.camera is not None else args.input


def parse_policy(spec: str, common: dict) -> tuple[str, str, dict]:
    """'regiondrop:threshold=0.1,margin=2' -> (label, name, params); ``common`` fills the gaps."""
    from dataclasses import fields

    from passrt.engine.policies import registry

    policies = registry()
    name, _, rest = spec.partition(":")
    if name not in policies:
        raise PassrtError(f"unknown policy '{name}'; choose one of: {', '.join(policies)}")
    accepted = {f.name for f in fields(policies[name])}
    params = {k: v for k, v in common.items() if k in accepted}
    params.update(_parse_pairs(rest.split(",") if rest else []))
    return spec, name, params


def common_params(args) -> dict:
    params = _parse_pairs(args.param)
    if args.threshold is not None:
        params["threshold"] = args.threshold
    if getattr(args, "gates", None) is not None:
        params["gates"] = args.gates
    return params


def _parse_pairs(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PassrtError(f"policy parameter '{pair}' is not NAME=VALUE")
        out[key.strip()] = _value(value.strip())
    return out


def _value(text: str):
    if text.lower() in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_size(text: str) -> tuple[int, int]:
    h, sep, w = text.lower().partition("x")
    try:
        size = (int(h), int(w))
    except ValueError:
        size = None
    if not sep or size is None or min(size) <= 0:
        raise PassrtError(f"--input-size must be HEIGHTxWIDTH, e.g. 576x768; got '{text}'")
    return size
