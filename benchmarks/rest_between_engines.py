"""What a sparse frame costs right after ONNX Runtime frames, and after a rest (why `passrt bench` rests
between engines' blocks: passrt/runtime/bench.py, REST_S).

    python benchmarks/rest_between_engines.py [CLIP] [FRAMES]

Cases, taking turns frame by frame: "none" (after the engine's own previous frame), "ortS" (two frames of
the ONNX Runtime baseline, ORT's default settings, then a rest of S seconds), "torchS" (a dense PyTorch
frame, then S seconds). The sparse engine is regiondrop (threshold 0.1, native executor). Medians in ms.
"""
import statistics
import sys
import time

import torch

import passrt
from passrt.assets import resolve_input
from passrt.models import load_model
from passrt.runtime import backends
from passrt.runtime.frames import read_frames

clip = sys.argv[1] if len(sys.argv) > 1 else "vtest"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 80
spec = load_model("ssdlite-pedestrian")
frames = read_frames(resolve_input(clip), n, None, preprocess=spec.preprocess).frames
ort = backends.OnnxRuntimeDense(spec.module, frames[0], spec.name)
sparse = passrt.sparsify(spec.module, "regiondrop", threshold=0.1, executor="native",
                         dense_engine=backends.DenseOnnxRuntime(spec.module, spec.name))
cases = {"none": (None, 0), "ort0": (ort, 0), "ort0.02": (ort, 0.02), "ort0.05": (ort, 0.05),
         "ort0.1": (ort, 0.1), "ort0.2": (ort, 0.2), "torch0": (spec.module, 0), "torch0.1": (spec.module, 0.1)}
times = {c: [] for c in cases}
with torch.inference_mode():
    for x in frames[:3]:
        ort(x)
        sparse(x)
    for i, x in enumerate(frames[3:]):
        case = list(cases)[i % len(cases)]
        before, rest = cases[case]
        for _ in range(2 if before is ort else 1 if before is not None else 0):
            before(frames[i])
        time.sleep(rest)
        t0 = time.perf_counter()
        sparse(x)
        times[case].append((time.perf_counter() - t0) * 1e3)
print(clip, {c: round(statistics.median(v), 1) for c, v in times.items()})
