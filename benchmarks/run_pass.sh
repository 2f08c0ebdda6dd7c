#!/usr/bin/env bash
# PASS vs RegionDrop (benchmarks/RESULTS.md, "PASS, common design vs paper design vs RegionDrop").
# Gates are trained on frames 200-599 of vtest.avi at its native 768x576, evaluated on the held-out
# frames 0-199 of vtest and on franck (a fixed camera the gates never saw), each clip in one bench run.
# Run from the repository root after `make install`. Record `uptime` with the timings: MACs, R_p and
# agreement do not depend on the machine's load, FPS and latency do.
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=benchmarks/results/pass
WORK=${WORK:-out/pass}
COMMON_STEPS=${COMMON_STEPS:-150}
PAPER_STEPS=${PAPER_STEPS:-100}
mkdir -p "$OUT" "$WORK"
uptime | tee "$OUT/load.txt"
# The new default design: warm start (imitate regiondrop), then triplet + budget on what inference reuses.
{ time "$BIN/passrt" train-gates --clips vtest@200: --steps "$COMMON_STEPS" --out "$WORK/gates-common.pt"; } \
  2>"$WORK/train-common.log"
# The warm start alone (the same seed: the common gates' starting point).
"$BIN/passrt" train-gates --clips vtest@200: --steps 0 --out "$WORK/gates-warm.pt" 2>"$WORK/train-warm.log"
# The paper-faithful design (default gates, one per input resolution).
{ time "$BIN/passrt" train-gates --design paper --clips vtest@200: --steps "$PAPER_STEPS" \
  --out "$WORK/gates-paper.pt"; } 2>"$WORK/train-paper.log"
POLICIES="dense,regiondrop,pass:design=paper,gates=$WORK/gates-paper.pt,pass:gates=$WORK/gates-warm.pt,pass:gates=$WORK/gates-common.pt"
for CLIP in vtest franck; do
  uptime | tee -a "$OUT/load.txt"
  "$BIN/passrt" bench --input "$CLIP" --frames 200 --no-onnxruntime --policies "$POLICIES" \
    --json "$OUT/${CLIP}.json" | tee "$OUT/${CLIP}.txt"
done
uptime | tee -a "$OUT/load.txt"
