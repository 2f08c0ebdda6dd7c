#!/usr/bin/env bash
# The operating-points benchmarks behind benchmarks/RESULTS.md ("Operating points that hold on footage
# nobody tuned for"): one bench run per clip with the defaults (no per-clip tuning), the earlier absolute
# default for comparison, and a calibration on vtest. Run from the repository root after `make install`.
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=benchmarks/results/operating_points
mkdir -p "$OUT"
POLICIES="dense,regiondrop,regiondrop:threshold=0.1,exact:threshold=auto,layerwise"
bench() {  # clip frames
  "$BIN/passrt" bench --input "$1" --frames "$2" --policies "$POLICIES" --json "$OUT/$1.json" | tee "$OUT/$1.txt"
}
bench vtest 200
bench bigbuckbunny 100
bench carphone 120
bench sports2d 60
bench pose2sim 60
bench franck 150
bench marketstreet 100
# The detector before and after the anchor fix (counts, and a picture).
"$BIN/python" benchmarks/detector_check.py --image docs/images/detector-before-after.jpg | tee "$OUT/detector_check.txt"
# A calibration on the user's footage (here vtest): the trade-off table and curve.
"$BIN/passrt" calibrate --input vtest --frames 150 --target-agreement 0.99 -o "$OUT/vtest_policy.json" \
  --plot "$OUT/vtest_calibration.png" | tee "$OUT/vtest_calibration.txt"
