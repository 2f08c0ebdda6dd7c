#!/usr/bin/env bash
# Pose on a held person crop (model `blazepose`): PCK of each policy against dense, next to FPS,
# on vtest and pose2sim. Writes benchmarks/results/pose/{vtest,pose2sim}.{txt,json} and the load.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=benchmarks/results/pose
FRAMES=${FRAMES:-50}
mkdir -p "$OUT"
uptime > "$OUT/load.txt"
for clip in vtest pose2sim; do
  "$BIN/python" -m passrt bench --model blazepose --input "$clip" --frames "$FRAMES" \
    --policies dense,regiondrop,exact,exact:threshold=auto --json "$OUT/$clip.json" | tee "$OUT/$clip.txt"
  uptime >> "$OUT/load.txt"
done
