#!/usr/bin/env bash
# Everything passrt can check on a GPU machine, as ONE command, under 10 minutes on an H200:
#   bash benchmarks/gpu_check.sh [--out DIR] [--dry-run] [--budget SECONDS] [--frames N]
# Steps, skips and results: benchmarks/gpu_check.py (its docstring). PYTHON picks the interpreter
# (default: python3 on PATH, the one with the GPU build of torch).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
