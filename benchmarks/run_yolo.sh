#!/usr/bin/env bash
# yolov3-tiny (Darknet, person class) on vtest and franck: speed-ups and AP50 agreement with dense,
# and exact@0 against ONNX Runtime frame by frame. Writes benchmarks/results/yolo/.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=benchmarks/results/yolo
FRAMES=${FRAMES:-50}
mkdir -p "$OUT"
uptime > "$OUT/load.txt"
"$BIN/python" benchmarks/exact_check.py yolov3-tiny vtest "$FRAMES" | tee "$OUT/exact_vs_ort.txt"
for clip in vtest franck; do
  "$BIN/python" -m passrt bench --model yolov3-tiny --input "$clip" --frames "$FRAMES" \
    --policies dense,regiondrop,exact --json "$OUT/$clip.json" | tee "$OUT/$clip.txt"
  uptime >> "$OUT/load.txt"
done
