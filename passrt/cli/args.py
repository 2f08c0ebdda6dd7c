"""Argument groups shared by the subcommands: each registers its flags *and* parses them back
(the shape of Polygraphy's ``tools/args``), and options generated from dataclass fields
(:mod:`passrt.options`). Nothing here imports torch: every ``--help`` stays light."""

from __future__ import annotations

import dataclasses
from typing import Any

from passrt.errors import PassrtError

SOURCE_HELP = ("a video file, a directory of images or a quoted glob ('frames/*.jpg', natural order), an asset name (vtest, sports2d, pose2sim, franck, marketstreet, bigbuckbunny, "
               "carphone: fetched on first use; `passrt assets` lists them), "
               "/dev/videoN or v4l2:///dev/videoN, csi://N (Jetson CSI camera), rtsp://..., or a camera index")
POLICY_HELP = ("dense, exact, regiondrop, layerwise or pass (learned gates: --gates PATH; the design the file holds, "
               "common or paper: docs/PASS.md), optionally with "
               "parameters: 'regiondrop:noise_multiple=6,margin=1', or a policy file from `passrt calibrate` "
               "(policy.json)")


class SourceArgs:
    """--input / --camera -> a source URI."""

    def __init__(self, required: bool = True, many: bool = False):
        self.required, self.many = required, many

    def add_to(self, parser) -> None:
        g = parser.add_argument_group("input")
        src = g.add_mutually_exclusive_group(required=self.required)
        if self.many:
            src.add_argument("--input", "-i", metavar="URI", action="append",
                             help=SOURCE_HELP + "; repeat for several streams in one process (one copy of the "
                                                "model, tiled output)")
        else:
            src.add_argument("--input", "-i", metavar="URI", help=SOURCE_HELP)
        src.add_argument("--camera", type=int, metavar="N", help="camera index (same as --input N)")

    def check(self, args) -> None:
        if args.camera is not None and args.camera < 0:
            raise PassrtError(f"--camera must be a camera index, 0 or more, got {args.camera}")

    def parse(self, args):
        """The source URI; with ``many``, the list of them."""
        self.check(args)
        if args.camera is not None:
            return [str(args.camera)] if self.many else str(args.camera)
        return args.input


class ModelArgs:
    """--model -> a model name (None: the command's default, e.g. the model an engine was exported from)."""

    def __init__(self, default: str | None = "ssdlite-pedestrian"):
        self.default = default

    def add_to(self, parser) -> None:
        from passrt.models import FILES_HELP, MODELS

        default = f" (default: {self.default})" if self.default else ""
        parser.add_argument_group("model").add_argument(
            "--model", default=self.default,
            help=f"model name (known: {', '.join(MODELS)}) or {FILES_HELP}{default}")

    def parse(self, args) -> str | None:
        return args.model


class PolicyArgs:
    """--policy (or --policies, several) with --threshold / --param / --gates -> PolicySpec(s)."""

    def __init__(self, default: str, many: bool = False, help: str = POLICY_HELP):
        self.default, self.many, self.help = default, many, help

    def add_to(self, parser) -> None:
        if self.many:
            parser.add_argument("--policies", default=self.default, help=f"policy specs separated by commas ({self.help});"
                                                                          f" default: {self.default}")
        else:
            parser.add_argument("--policy", help=f"{self.help} (default: {self.default})")
        g = parser.add_argument_group("policy parameters (applied to every policy that takes them)")
        g.add_argument("--threshold", type=_threshold,
                       help="input change threshold: 'auto' (noise_multiple x the stream's measured noise; "
                            "regiondrop's and layerwise's default) or an absolute intensity in [0, 1]")
        g.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                       help="any other policy parameter, e.g. --param margin=2 --param crossover=0.5")
        g.add_argument("--gates", metavar="PATH", help="gates file for the 'pass' policy (from `passrt train-gates`)")

    def given(self, args) -> list[str]:
        """The policy flags the user gave (some commands refuse them in some modes)."""
        flags = (("--policy", getattr(args, "policy", None)), ("--threshold", args.threshold),
                 ("--param", args.param), ("--gates", args.gates))
        return [flag for flag, v in flags if v not in (None, [])]

    def parse(self, args):
        from passrt.policies.spec import PolicySpec, parse_pairs

        common = parse_pairs(args.param)
        if args.threshold is not None:
            common["threshold"] = args.threshold
        if args.gates is not None:
            common["gates"] = args.gates
        if self.many:
            return PolicySpec.parse_list(args.policies, common)
        return PolicySpec.parse(args.policy or self.default, common)


def _threshold(text: str):
    from passrt.policies.noise import AUTO

    if text == AUTO:
        return text
    try:
        return float(text)
    except ValueError:
        import argparse
        raise argparse.ArgumentTypeError(f"'{text}' is neither 'auto' nor a number") from None


class PluginArgs:
    """--plugin: passrt's TensorRT plugin library, for engines/graphs with PassSparseConv2d layers."""

    def __init__(self, default_note: str = ""):
        self.default_note = default_note

    def add_to(self, group) -> None:
        group.add_argument("--plugin", metavar="PATH",
                           help="libpassrt_trt.so, for engines with PassSparseConv2d layers (default: "
                                f"$PASSRT_TRT_PLUGIN, {self.default_note}else plugins/tensorrt/build/libpassrt_trt.so)")

    def parse(self, args) -> str | None:
        return args.plugin


def add_options(parser, cls, title: str | None = None, skip: tuple = ()) -> None:
    """One ``--flag`` per field of dataclass ``cls`` made by :func:`passrt.options.option`; a field
    whose default is itself such a dataclass adds that dataclass's options too."""
    target = parser.add_argument_group(title) if title else parser
    for f in dataclasses.fields(cls):
        if f.name in skip or "help" not in f.metadata:
            continue
        if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
            add_options(parser, f.default_factory, title, skip)
            continue
        meta = dict(f.metadata)
        flags = (f"--{f.name.replace('_', '-')}", *meta.pop("flags", ()))
        default = f.default if f.default is not dataclasses.MISSING else None
        if "type" not in meta and default is not None and not isinstance(default, (bool, list)):
            meta["type"] = type(default)
        if default is not None and not meta.get("required"):
            meta["help"] += f" (default: {default})"
        target.add_argument(*flags, dest=f.name, default=default, **meta)


def options_from(args, cls, **given: Any):
    """An instance of ``cls`` from the parsed options :func:`add_options` registered, plus ``given``."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in given or "help" not in f.metadata:
            continue
        if f.default_factory is not dataclasses.MISSING and dataclasses.is_dataclass(f.default_factory):
            values[f.name] = options_from(args, f.default_factory)
        elif hasattr(args, f.name):
            values[f.name] = getattr(args, f.name)
    return cls(**values, **given)


def unit_interval(name: str, value: float | None) -> None:
    """A score or fraction the user gave must be in [0, 1]."""
    if value is not None and not 0 <= value <= 1:
        raise PassrtError(f"{name} must be between 0 and 1, got {value:g}")


def non_negative(name: str, value: int | None) -> None:
    if value is not None and value < 0:
        raise PassrtError(f"{name} must be 0 or more, got {value}")


def positive(name: str, value: int | None, allow_none: bool = True) -> None:
    """A count the user gave must be at least 1."""
    if value is None and allow_none:
        return
    if value is None or value < 1:
        raise PassrtError(f"{name} must be at least 1, got {value}")
