#!/usr/bin/env bash
# The operating-points benchmarks behind benchmarks/RESULTS.md ("Operating points that hold on footage
# nobody tuned for"): one bench run per clip with the defaults (no per-clip tuning), the earlier absolute
# default for comparison, and a calibration on vtest. Run from the repository root after `make install`.
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=${OUT:-benchmarks/results/operating_points}
mkdir -p "$OUT"
POLICIES="dense,regiondrop,regiondrop:threshold=0.1,exact:threshold=auto,layerwise"
bench() {  # clip frames
  "$BIN/passrt" bench --input "$1" --frames "$2" --policies "$POLICIES" --json "$OUT/$1.json" | tee "$OUT/$1.txt"
}
bench vtest 200
bench bigbuckbunny 100
bench carphone 120
bench sports2d 150
bench pose2sim 100  # the whole clip
bench franck 150
bench marketstreet 100
# Agreement and executed MACs only (no timings: for a loaded machine), on cached dense detections: every
# policy of the table above, and regiondrop under the earlier noise-level rule ("max") beside the default.
RULES="$BIN/python benchmarks/noise_rules.py"
for clip in vtest:200 sports2d:80 pose2sim:60 franck:150 carphone:120 marketstreet:100 bigbuckbunny:100; do
  $RULES "${clip%:*}" "${clip#*:}" max,track regiondrop
  $RULES "${clip%:*}" "${clip#*:}" track "regiondrop:threshold=0.1;exact:threshold=auto;layerwise"
done | tee "$OUT/noise_rules.txt"
$RULES pose2sim 100 max,track regiondrop | tee -a "$OUT/noise_rules.txt"
$RULES sports2d 150 max,track regiondrop | tee -a "$OUT/noise_rules.txt"
# The level's STEP (1.1) against 1.05 and 1.2.
$RULES sports2d 80 step=1.05,step=1.2 regiondrop | tee -a "$OUT/noise_rules.txt"
$RULES vtest 200 step=1.05,step=1.2 regiondrop | tee -a "$OUT/noise_rules.txt"
# regiondrop's speed with the tracked level beside the old absolute default (side by side, one run).
"$BIN/passrt" bench --input vtest --frames 200 --policies dense,regiondrop,regiondrop:threshold=0.1 \
  --json "$OUT/vtest_noise_track.json" | tee "$OUT/vtest_noise_track.txt"
# The detector before and after the anchor fix (counts, and a picture).
"$BIN/python" benchmarks/detector_check.py --image docs/images/detector-before-after.jpg | tee "$OUT/detector_check.txt"
# A calibration on the user's footage (here vtest): the trade-off table and curve.
"$BIN/passrt" calibrate --input vtest --frames 150 --target-agreement 0.99 -o "$OUT/vtest_policy.json" \
  --plot "$OUT/vtest_calibration.png" | tee "$OUT/vtest_calibration.txt"
