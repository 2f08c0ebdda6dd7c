#!/usr/bin/env bash
# Tracking agreement next to speed, in one bench run (benchmarks/RESULTS.md "Tracking on 200 vtest frames"):
# every policy's ByteTrack tracks against the dense engine's tracks (MOTA, IDF1, ID switches), with FPS.
# The tracking figures do not depend on the machine's load; the FPS columns do (uptime is recorded).
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=benchmarks/results/tracking
mkdir -p "$OUT"
uptime | tee "$OUT/uptime_before.txt"
"$BIN/passrt" bench --input vtest --frames 200 --track bytetrack \
  --policies dense,regiondrop,regiondrop:threshold=0.1,exact:threshold=0.05,layerwise \
  --json "$OUT/vtest_bytetrack.json" | tee "$OUT/vtest_bytetrack.txt"
uptime | tee "$OUT/uptime_after.txt"
