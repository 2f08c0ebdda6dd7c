#!/usr/bin/env bash
# PASS, common design, vs RegionDrop (benchmarks/RESULTS.md, "PASS: the common design").
# The gate is trained on frames 200-599 of vtest.avi at its native 768x576 and evaluated on the
# held-out frames 0-199 of vtest and on franck (a fixed camera it never saw), one bench run per clip.
# Run from the repository root after `make install`. `uptime` goes to load.txt next to the
# results: MACs, R_p and agreement do not depend on the machine's load, FPS and latency do.
# PAPER=1 also trains the paper-design gates (--design paper, PAPER_STEPS steps) and adds them to
# both runs (not done for the committed results: 65 s a step on the loaded machine that day).
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=benchmarks/results/pass
WORK=${WORK:-out/pass}
mkdir -p "$OUT" "$WORK"
uptime | tee "$OUT/load.txt"
# Warm start (imitate regiondrop, 400 steps) + 25 triplet/budget steps; then 25 more (resumed exactly).
{ time "$BIN/passrt" train-gates --clips vtest@200: --steps 25 --out "$WORK/gates-common.pt"; } 2>"$WORK/train-common.log"
cp "$WORK/gates-common.pt" "$WORK/gates-common-25.pt"
{ time "$BIN/passrt" train-gates --clips vtest@200: --steps 50 --resume --out "$WORK/gates-common.pt"; } \
  2>>"$WORK/train-common.log"
cp "$WORK/gates-common.pt" "$WORK/gates-common-50.pt"
POLICIES="dense,regiondrop,pass:gates=$WORK/gates-common-25.pt,pass:gates=$WORK/gates-common-50.pt"
if [ "${PAPER:-0}" = 1 ]; then
  "$BIN/passrt" train-gates --design paper --clips vtest@200: --steps "${PAPER_STEPS:-300}" \
    --out "$WORK/gates-paper.pt" 2>"$WORK/train-paper.log"
  POLICIES="$POLICIES,pass:design=paper,gates=$WORK/gates-paper.pt"
fi
for CLIP in vtest franck; do
  "$BIN/passrt" bench --input "$CLIP" --frames 200 --no-onnxruntime --policies "$POLICIES" \
    --json "$OUT/${CLIP}.json" | tee "$OUT/${CLIP}.txt"
  uptime | tee -a "$OUT/load.txt"
done
