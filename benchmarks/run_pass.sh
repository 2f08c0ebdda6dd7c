#!/usr/bin/env bash
# PASS vs RegionDrop on vtest.avi (benchmarks/RESULTS.md, "PASS: learned gates vs RegionDrop").
# Gates are trained on frames 200-599 of vtest.avi and evaluated on frames 0-199 (held out),
# at the clip's native 768x576. Run from the repository root after `make install`.
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=benchmarks/results
WORK=${WORK:-out/pass}
mkdir -p "$OUT" "$WORK"
# Stage 1: the default gates (one per input resolution), default loss settings.
"$BIN/passrt" train-gates --clips vtest@200: --steps 300 --out "$WORK/gates-p.pt" 2>"$WORK/train.log"
# Stage 2: distillation from the dense model, on the same training frames.
"$BIN/passrt" finetune --gates "$WORK/gates-p.pt" --clips vtest@200: --steps 100 --out "$WORK/gates-f.pt" \
  2>"$WORK/finetune.log"
# All engines side by side on the held-out frames.
"$BIN/passrt" bench --input vtest --frames 200 --no-onnxruntime \
  --policies "dense,regiondrop,pass:gates=$WORK/gates-p.pt,pass:gates=$WORK/gates-p.pt,compare=previous,pass:gates=$WORK/gates-f.pt" \
  --json "$OUT/vtest_pass.json" | tee "$OUT/vtest_pass.txt"
