#!/usr/bin/env bash
# The CPU benchmarks behind benchmarks/RESULTS.md. Run from the repository root after
# `make install` (which installs matplotlib for the plots).
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=benchmarks/results
mkdir -p "$OUT"
# 1. The main comparison on vtest.avi at its native 768x576.
"$BIN/passrt" bench --input vtest --frames 200 \
  --policies dense,regiondrop,exact:threshold=0.1,layerwise:threshold=0.1 \
  --json "$OUT/vtest.json" --plot "$OUT/vtest.png" | tee "$OUT/vtest.txt"
# 2. RegionDrop operating points (threshold, pixels per block, margin, tile size).
"$BIN/passrt" bench --input vtest --frames 100 --no-onnxruntime \
  --policies "dense,regiondrop:threshold=0.08,min_pixels=1,regiondrop:threshold=0.08,min_pixels=8,regiondrop,regiondrop:margin=0,regiondrop:threshold=0.14,regiondrop:min_tile=2" \
  --json "$OUT/vtest_sweep.json" | tee "$OUT/vtest_sweep.txt"
# 3. Everything changes: a moving camera (bigbuckbunny, 1280x720).
"$BIN/passrt" bench --input bigbuckbunny --frames 100 --policies dense,regiondrop,exact:threshold=0.1 \
  --json "$OUT/bigbuckbunny.json" | tee "$OUT/bigbuckbunny.txt"
