#!/usr/bin/env bash
# Two ONNX CNNs from registry packages (mtcnn-pnet, ppocr-det), on vtest and franck (both fixed cameras):
# dense PyTorch, dense ONNX Runtime (the file itself), exact at threshold 0 and regiondrop (the default
# policy); speed and the raw-output error against dense PyTorch, per output. Expected 3-4 minutes on an idle
# 2-core machine (6 minutes of CPU; not yet timed idle). Writes $OUT (default benchmarks/results/onnx_models)/{MODEL}-{CLIP}.{txt,json} and the load.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-benchmarks/results/onnx_models}
FRAMES=${FRAMES:-50}
mkdir -p "$OUT"
uptime > "$OUT/load.txt"
for model in mtcnn-pnet ppocr-det; do
  for clip in vtest franck; do
    "$BIN/python" -m passrt bench --model "$model" --input "$clip" --frames "$FRAMES" \
      --policies dense,exact,regiondrop --json "$OUT/$model-$clip.json" | tee "$OUT/$model-$clip.txt"
    uptime >> "$OUT/load.txt"
  done
done
