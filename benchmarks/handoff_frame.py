"""A frame ONNX Runtime answers inside passrt, split: the policy's frame test, ORT's run, the rest; beside ORT alone.

    python benchmarks/handoff_frame.py CLIP FRAMES POLICY

The policy runs on the native executor with ORT as its dense engine (threshold="auto" for exact); ORT alone is the
same model's ORT session, taking turns with passrt in blocks of 10 frames. Medians in ms over the frames ORT answered.
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

clip, n, policy = sys.argv[1], int(sys.argv[2]), sys.argv[3]
spec = load_model("ssdlite-pedestrian")
frames = read_frames(resolve_input(clip), n, None, preprocess=spec.preprocess).frames
alone = backends.OnnxRuntimeDense(spec.module, frames[0], spec.name)
engine = passrt.sparsify(spec.module, policy, executor="native", dense_engine=backends.DenseOnnxRuntime(spec.module, spec.name),
                         **({"threshold": "auto"} if policy == "exact" else {}))
with torch.inference_mode():
    engine(frames[0])
executor, spent = engine.executor, {"test": [], "engine": []}


def timed(fn, key):
    def run(*args):
        t0 = time.perf_counter()
        out = fn(*args)
        spent[key].append(time.perf_counter() - t0)
        return out
    return run


executor.policy.begin_frame = timed(executor.policy.begin_frame, "test")
dense = executor.dense_engine
executor.dense_engine = type("Timed", (), {"__call__": lambda self, x: timed(dense, "engine")(x), "fill": dense.fill})()
ort, answered = [], []  # answered: (frame, its test, ORT's run) in seconds
with torch.inference_mode():
    for start in range(0, n, 10):
        for x in frames[start:start + 10]:
            t0 = time.perf_counter()
            alone(x)
            ort.append(time.perf_counter() - t0)
        for x in frames[start:start + 10]:
            runs = len(spent["engine"])
            t0 = time.perf_counter()
            engine(x)
            if len(spent["engine"]) > runs:
                answered.append((time.perf_counter() - t0, spent["test"][-1], spent["engine"][-1]))


def ms(values):
    return round(1000 * statistics.median(values), 1)


if not answered:
    sys.exit(f"{clip} {policy}: no frame of {n} answered by ORT")
print(f"{clip} {policy}: {len(answered)} of {n} frames answered by ORT; ORT alone {ms(ort)}, a frame answered "
      f"{ms([a for a, _, _ in answered])} = test {ms([t for _, t, _ in answered])} + ORT {ms([e for _, _, e in answered])}"
      f" + rest {ms([a - t - e for a, t, e in answered])}")
