#!/usr/bin/env bash
# The native CPU executor behind benchmarks/RESULTS.md ("The native CPU executor"): where a frame's
# time goes (reference and native), then one bench run per clip with every policy on the native and
# the reference executor side by side against dense PyTorch and dense ONNX Runtime, and the op
# executor on CPU. Run from the repository root after `make install`, on an otherwise idle machine.
set -euo pipefail
BIN=${BIN:-.venv/bin}
OUT=${OUT:-benchmarks/results/native}
mkdir -p "$OUT"
for executor in reference native; do
  "$BIN/python" benchmarks/profile_frame.py --input vtest --frames 60 --executor "$executor" | tee "$OUT/profile_$executor.txt"
done
"$BIN/passrt" bench --input vtest --frames 150 --policies dense,regiondrop,regiondrop:threshold=0.1,exact:threshold=auto,layerwise \
  --executors native,reference --json "$OUT/vtest.json" --plot "$OUT/vtest.png" | tee "$OUT/vtest.txt"
"$BIN/passrt" bench --input bigbuckbunny --frames 150 --policies dense,regiondrop,exact:threshold=auto,layerwise \
  --json "$OUT/bigbuckbunny.json" | tee "$OUT/bigbuckbunny.txt"
"$BIN/passrt" bench --input bigbuckbunny --frames 150 --policies dense,regiondrop --dense-engine none \
  --json "$OUT/bigbuckbunny_no_dense_engine.json" | tee "$OUT/bigbuckbunny_no_dense_engine.txt"
# The op executor on CPU (the exported program run eagerly, each node one conv_tiles call) next to the others.
# Every frame computed by the executor itself (no dense engine), so the three compare like for like.
"$BIN/passrt" bench --input vtest --frames 60 --policies dense,regiondrop,exact:threshold=auto,layerwise \
  --executors native,reference,op --no-onnxruntime --dense-engine none --json "$OUT/vtest_op.json" \
  | tee "$OUT/vtest_op.txt"
