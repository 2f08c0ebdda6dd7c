"""How fast the native executor's GEMMs run inside a sparse frame, against the same GEMMs run alone.

    python benchmarks/gemm_in_frame.py [CLIP] [FRAMES]

Runs regiondrop (native executor) on the clip, profiles the last 10 of FRAMES frames (torch.profiler,
which adds its own cost per call: compare the rates, not the absolute ms), groups the GEMMs
(aten::mm) by shape (k = window x input channels, c = output channels), and times each group's GEMM
alone at its mean row count, warm in the caches. The gap between the two is what keeping a layer's
operands in the caches (fusing it with its neighbours) could win at most; a MobileNetV2 block's expand
1x1 is the k -> 6k rows (k = 16 .. 160).
"""
import collections
import statistics
import sys
import time

import torch
from torch.profiler import ProfilerActivity, profile

import passrt
from passrt import assets
from passrt.models import load_model
from passrt.runtime.frames import read_frames

clip = sys.argv[1] if len(sys.argv) > 1 else "vtest"
frames = int(sys.argv[2]) if len(sys.argv) > 2 else 30
torch.set_num_threads(2)
spec = load_model("ssdlite-pedestrian")
xs = read_frames(str(assets.fetch(clip)), frames, None, preprocess=spec.preprocess).frames
model = passrt.sparsify(spec.module, "regiondrop", executor="native")
for x in xs[:-10]:
    model(x)
with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
    for x in xs[-10:]:
        model(x)
groups = collections.defaultdict(lambda: [0, 0.0, 0])  # (k, c) -> [rows, seconds, calls]
for ev in prof.events():
    if ev.name in ("aten::mm", "aten::addmm"):
        mats = [s for s in ev.input_shapes if len(s) == 2]  # (mm) a, b, out; (addmm) a, b after the bias
        a, b = next((a, b) for a, b in zip(mats, mats[1:]) if a[1] == b[0])
        g = groups[(a[1], b[1])]
        g[0] += a[0]
        g[1] += ev.cpu_time_total / 1e6
        g[2] += 1


def alone(n: int, k: int, c: int) -> float:
    x, w, out = torch.randn(n, k), torch.randn(k, c), torch.empty(n, c)
    for _ in range(5):
        torch.mm(x, w, out=out)
    times = []
    for _ in range(50):
        t = time.perf_counter()
        torch.mm(x, w, out=out)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


total_in, total_alone = 0.0, 0.0
print(f"{clip}, regiondrop, native executor, GEMMs of 10 sparse frames (torch {torch.__version__}, 2 threads)")
print("| k | c | calls/frame | mean rows | ms/frame in frame | GFLOP/s in frame | ms/frame alone | GFLOP/s alone |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for (k, c), (rows, seconds, calls) in sorted(groups.items(), key=lambda kv: -kv[1][1]):
    n = max(1, round(rows / calls))
    t_alone = alone(n, k, c) * calls / 10
    flops = 2 * rows * k * c / 10
    total_in += seconds / 10
    total_alone += t_alone
    print(f"| {k} | {c} | {calls / 10:.0f} | {n} | {1e3 * seconds / 10:.2f} | {flops / (seconds / 10) / 1e9:.0f} | "
          f"{1e3 * t_alone:.2f} | {flops / t_alone / 1e9:.0f} |")
print(f"\nall GEMMs: {1e3 * total_in:.1f} ms per frame in the frame, {1e3 * total_alone:.1f} ms alone")
