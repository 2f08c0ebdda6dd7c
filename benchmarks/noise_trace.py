"""The noise estimate frame by frame on a clip, beside the block statistic's quantiles over all blocks and
over the blocks the estimator calls static (8-bit steps):

    python benchmarks/noise_trace.py CLIP FRAMES
"""
import sys, torch, numpy as np
from passrt.assets import resolve_input
from passrt.models import load_model
from passrt.runtime.frames import stream_frames
from passrt.policies import noise
spec = load_model("ssdlite-pedestrian")
clip, n = sys.argv[1], int(sys.argv[2])
fs = stream_frames(resolve_input(clip), n, block=10)
xs = [spec.preprocess(im) for b in fs.blocks() for im in b]
level = torch.zeros(1)
for t in range(2, len(xs)):
    x, p, p2 = xs[t], xs[t-1], xs[t-2]
    one, two = noise._block_statistics(x, [p, p2], 16, 8)
    static = two <= noise.COHERENCE * one + 1/255
    m, frac = noise.frame_noise(x, p, p2, 16, 8, 1/255)
    level = noise.update_level(level, m, torch.tensor([0.1]), torch.zeros(1))
    q = lambda v, a: float(torch.quantile(v, a)) * 255
    print(t, "meas %.1f" % (float(m) * 255), "level %.1f" % (float(level) * 255), "static %.2f" % float(frac),
          "all: p25 %.1f p50 %.1f p75 %.1f" % (q(one, .25), q(one, .5), q(one, .75)),
          "static p50 %.1f p75 %.1f" % (q(one[static], .5), q(one[static], .75)),
          "nonstatic p50 %.1f" % (q(one[~static], .5) if (~static).any() else -1))
