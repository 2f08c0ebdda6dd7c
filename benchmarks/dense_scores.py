"""The dense model's detections down to score 0.2, frame by frame (do scores near the display threshold flicker
on static objects?):

    python benchmarks/dense_scores.py CLIP FRAMES
"""
import sys, numpy as np, torch
from passrt.assets import resolve_input
from passrt.models import load_model
from passrt.runtime.backends import open_backend
from passrt.runtime.frames import stream_frames
spec = load_model("ssdlite-pedestrian")
fs = stream_frames(resolve_input(sys.argv[1]), int(sys.argv[2]), block=10)
dense = open_backend("torch:dense", spec)
f = 0
for b in fs.blocks():
    for im in b:
        x = spec.preprocess(im); H, W = x.shape[2:]
        d = spec.postprocess(dense(x), (H, W), score_threshold=0.2)
        print(f, [(list(map(int, bb[:2])), round(float(s), 3)) for bb, s in zip(d.boxes, d.scores)], flush=True)
        f += 1
