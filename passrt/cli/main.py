"""Entry point: `passrt run | bench | calibrate | export | build | train-gates | finetune | assets`.

User errors (:class:`PassrtError`) print one line and exit with status 2; Ctrl-C exits 130.
Heavy modules are imported by the subcommand that needs them, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import sys

from passrt.errors import PassrtError, redact

DESCRIPTION = "passrt: run video CNNs faster by recomputing only what changed between frames."


def build_parser() -> argparse.ArgumentParser:
    from passrt.cli import assets_cmd, bench_cmd, build_cmd, calibrate_cmd, export_cmd, gates_cmd, run_cmd

    parser = argparse.ArgumentParser(prog="passrt", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (run_cmd, bench_cmd, calibrate_cmd, gates_cmd, export_cmd, build_cmd, assets_cmd):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except PassrtError as e:
        print(f"passrt: error: {redact(e)}", file=sys.stderr)  # a camera URI's password never reaches a log
        return 2
    except KeyboardInterrupt:
        print("passrt: interrupted", file=sys.stderr)
        return 130


def _version() -> str:
    from passrt import __version__

    return f"passrt {__version__}"


if __name__ == "__main__":
    sys.exit(main())
