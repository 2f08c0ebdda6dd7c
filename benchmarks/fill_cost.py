"""What a dense frame costs three ways, on one process side by side: ONNX Runtime's plain frame, ONNX Runtime
filling every cache of passrt's (the model with each cache as an output, written into the caches' rows by
address: passrt/plan/values.py), and passrt's own dense frame (the native executor's refresh).

    python benchmarks/fill_cost.py [CLIP] [FRAMES]

Prints medians in ms and the megabytes the caches hold; checks that the filled caches equal passrt's own.
"""

import sys
import time

import numpy as np
import torch

import passrt
from passrt.models import load_model
from passrt.runtime.backends import DenseOnnxRuntime
from passrt.runtime.frames import read_frames

clip, n = (sys.argv[1] if len(sys.argv) > 1 else "vtest"), int(sys.argv[2]) if len(sys.argv) > 2 else 10
spec = load_model("ssdlite-pedestrian")
frames = read_frames(clip, n, None, preprocess=spec.preprocess).frames
ort = DenseOnnxRuntime(spec.module, spec.name)
own = passrt.sparsify(spec.module, "regiondrop", executor="native")
filled = passrt.sparsify(spec.module, "regiondrop", executor="native", dense_engine=ort)
times = {"ORT plain": [], "ORT filling the caches": [], "passrt's own dense frame": []}
with torch.inference_mode():
    own(frames[0]), filled(frames[0])
    env, env_filled = own.executor.env, filled.executor.env
    worst = max(float((env[k].nhwc() - env_filled[k].nhwc()).abs().max()) for k in env_filled if hasattr(env[k], "nhwc"))
    values, buffers = filled.executor._fill_args
    for x in frames:
        start = time.perf_counter(); ort(x); times["ORT plain"].append(time.perf_counter() - start)
        start = time.perf_counter(); ort.fill(x, values, buffers)
        times["ORT filling the caches"].append(time.perf_counter() - start)
        own.refresh()
        start = time.perf_counter(); own(x); times["passrt's own dense frame"].append(time.perf_counter() - start)
h, w = frames[0].shape[2:]
print(f"{clip} {w}x{h}, {len(frames)} frames, {torch.get_num_threads()} threads; caches "
      f"{sum(b.numel() for b in buffers) * 4 / 1e6:.0f} MB in {len(buffers)} values; filled vs own max |diff| {worst:.1e}")
for k, v in times.items():
    print(f"  {k}: {1000 * float(np.median(v)):.1f} ms")
