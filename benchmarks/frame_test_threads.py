"""The policy's frame test on two threads or one, on frames ONNX Runtime answers, beside ORT alone.

    python benchmarks/frame_test_threads.py CLIP FRAMES POLICY [MODEL]

exact:threshold=auto hands nearly every frame to ORT (its change spreads over the network): its median frame
is the frame test plus an ORT frame. Variants of the test's threads: "two" (every thread, as before),
"one" (always one thread), "passrt" (passrt's rule: one thread while the dense engine answers, i.e. the
caches are stale; passrt/engine/reference.py). With regiondrop on a fixed camera (sparse frames) it shows
what one thread would cost there. Engines take turns in blocks of 10 frames; medians in ms.
"""
import contextlib
import sys
import time

import numpy as np
import torch

import passrt
from passrt.engine import reference
from passrt.models import load_model
from passrt.runtime import backends
from passrt.runtime.frames import read_frames

clip, n, policy = sys.argv[1], int(sys.argv[2]), sys.argv[3]
spec = load_model(sys.argv[4] if len(sys.argv) > 4 else "ssdlite-pedestrian")
frames = read_frames(clip, n, None, preprocess=spec.preprocess).frames
params = {"threshold": "auto"} if policy == "exact" else {}
rule = reference._threads_for_frame_test
mode = {"now": "passrt"}


def variant(one: bool):
    return rule(one) if mode["now"] == "passrt" else rule(mode["now"] == "one")


reference._threads_for_frame_test = variant
engines = {"ort": backends.OnnxRuntimeDense(spec.module, frames[0], spec.name)}
for name in ("two", "one", "passrt"):
    engines[name] = passrt.sparsify(spec.module, policy, executor="native",
                                    dense_engine=backends.DenseOnnxRuntime(spec.module, spec.name), **params)
times = {k: [] for k in engines}
with torch.no_grad():
    for start in range(0, n, 10):
        for name, engine in engines.items():
            mode["now"] = name
            for x in frames[start:start + 10]:
                t0 = time.perf_counter()
                engine(x)
                times[name].append(time.perf_counter() - t0)
print(clip, policy, {k: round(1000 * float(np.median(v[3:])), 2) for k, v in times.items()},
      "frames ORT answered", [engines[k].stats()["dense_engine_frames"] for k in ("two", "one", "passrt")])
