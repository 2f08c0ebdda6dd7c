"""Where a sparse frame's time goes around the native program, medians over the frames (wall clock).

    python benchmarks/frame_parts.py [CLIP] [FRAMES] [POLICY]

Wraps, in one process: the policy's frame test (begin_frame) and its parts (the noise measurement and its
native statistic, the block counts, the reference's block copy, the level update and the threshold), the
per-grid tile bookkeeping (_grid_tiles), the runs of native steps (the program), the non-spatial steps,
and the frame as a whole. Native executor, no dense engine, after 5 frames of warm-up.
"""
import statistics
import sys
import time

import torch

import passrt
from passrt import assets
from passrt.kernels import native
from passrt.models import load_model
from passrt.policies import noise, regiondrop
from passrt.runtime.frames import read_frames

clip = sys.argv[1] if len(sys.argv) > 1 else "vtest"
n = int(sys.argv[2]) if len(sys.argv) > 2 else 65
policy = sys.argv[3] if len(sys.argv) > 3 else "regiondrop"
torch.set_num_threads(2)
spec = load_model("ssdlite-pedestrian")
xs = read_frames(str(assets.fetch(clip)), n, None, preprocess=spec.preprocess).frames
model = passrt.sparsify(spec.module, policy, executor="native")
for x in xs[:5]:
    model(x)
spent: dict = {}
order = ["frame"]  # the keys in the order printed


def timed(owner, attr, key):
    fn = getattr(owner, attr)
    order.append(key)

    def run(*args, **kwargs):
        t = time.perf_counter()
        out = fn(*args, **kwargs)
        spent[key] = spent.get(key, 0.0) + time.perf_counter() - t
        return out

    setattr(owner, attr, run)


executor = model.executor
for i, item in enumerate(executor.schedule or []):
    if isinstance(item, tuple):
        program, steps = item
        holder = type("Program", (), {"__call__": lambda self, tiles, _p=program: _p(tiles)})()
        timed(holder.__class__, "__call__", "native program")
        executor.schedule[i] = (holder, steps)
timed(executor.policy, "begin_frame", "frame test (begin_frame)")
timed(noise, "frame_noise", "  noise measurement")
timed(native, "block_rank_changes", "    its native statistic")
timed(native, "block_change_counts", "  block counts")
timed(native, "copy_blocks_", "  reference block copy")
timed(noise, "update_level", "  level update")
timed(noise, "threshold", "  threshold")
timed(regiondrop.masks, "dilate", "  margin (dilate)")
timed(executor, "_grid_tiles", "tile bookkeeping per step (_grid_tiles)")
timed(executor, "_run_dense_step", "non-spatial steps")
rows = []
for x in xs[5:]:
    spent.clear()
    t = time.perf_counter()
    model(x)
    spent["frame"] = time.perf_counter() - t
    rows.append(dict(spent))
print(f"{clip}, {policy}, native executor, {len(rows)} frames (torch {torch.__version__}, 2 threads), median ms:")
for key in order:
    print(f"{key:42s} {1e3 * statistics.median(r.get(key, 0.0) for r in rows):7.2f}")
