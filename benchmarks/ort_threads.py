"""Frames a sparse engine hands to ONNX Runtime, with three thread settings of its ORT session, beside plain ORT.

    python benchmarks/ort_threads.py CLIP FRAMES POLICY [MODEL]

exact:threshold=auto hands nearly every frame to ORT (its change spreads over the network), so its median is
an ORT frame plus the frame test. Settings of the dense engine's session: default (threads spin-wait between
runs), nospin (session.intra_op.allow_spinning=0), forcestop (session.force_spinning_stop=1: spin during a
run, stop at its end; what passrt uses). Engines take turns in blocks of 10 frames; medians in ms.
"""
import os, sys, time, torch, numpy as np
import passrt
from passrt.models import load_model
from passrt.runtime import backends
from passrt.runtime.frames import read_frames
torch.set_num_threads(2)
clip, n, policy = sys.argv[1], int(sys.argv[2]), sys.argv[3]
spec = load_model(sys.argv[4] if len(sys.argv) > 4 else "ssdlite-pedestrian")
frames = read_frames(clip, n, None, preprocess=spec.preprocess).frames
orig = backends._session
def with_cfg(*kv):
    def make(path, threads, between_runs=False):  # the setting under test replaces passrt's
        import onnxruntime as ort
        o = ort.SessionOptions(); o.intra_op_num_threads = threads
        o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if kv: o.add_session_config_entry(*kv)
        return ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
    return make
plain = backends.OnnxRuntimeDense(spec.module, frames[0], spec.name)
params = {"threshold": "auto"} if policy == "exact" else {}
eng = {"ort": plain}
for name, kv in [("default", ()), ("nospin", ("session.intra_op.allow_spinning", "0")), ("forcestop", ("session.force_spinning_stop", "1"))]:
    backends._session = with_cfg(*kv)
    d = backends.DenseOnnxRuntime(spec.module, spec.name)
    eng[name] = passrt.sparsify(spec.module, policy, executor="native", dense_engine=d, **params)
    with torch.no_grad(): eng[name](frames[0])  # sessions made now, with this config
t = {k: [] for k in eng}
with torch.no_grad():
    for k, e in eng.items():
        for x in frames[:3]: e(x)
    for b in range(0, n, 10):
        for k, e in eng.items():
            for x in frames[b:b + 10]:
                s = time.perf_counter(); e(x); t[k].append(time.perf_counter() - s)
print(clip, policy, {k: round(1000 * float(np.median(v)), 2) for k, v in t.items()},
      "engine frames", [eng[k].stats()["dense_engine_frames"] for k in list(eng)[1:]])
