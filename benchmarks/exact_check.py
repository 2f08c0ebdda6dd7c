"""exact at threshold 0 against ONNX Runtime, frame by frame, on a real clip.

    python benchmarks/exact_check.py MODEL CLIP [FRAMES]

ONNX Runtime runs the model's own .onnx file where it came as one, else the dense module exported
to ONNX. Prints, per output, the largest |passrt - ORT| over the frames and the largest |ORT| (the
scale), and how many frames the engine ran sparse (active fraction below 1). On camera frames
threshold 0 marks nearly every pixel (sensor noise), so most frames run dense; the sparse path at
threshold 0 is what the tests check with real content moved over a real frame.
"""

import sys

import numpy as np
import torch

import passrt
from passrt.models import load_model
from passrt.runtime.backends import OnnxRuntimeDense, OnnxRuntimeFile
from passrt.runtime.frames import read_frames


def main(model: str, clip: str, frames: int = 50) -> None:
    spec = load_model(model)
    images = read_frames(clip, frames, preprocess=spec.preprocess).frames
    ort = OnnxRuntimeFile(spec.onnx) if spec.onnx is not None else OnnxRuntimeDense(spec.module, images[0], model)
    engine = passrt.sparsify(spec.module, "exact", scene_cut=1.0)
    worst, scale, sparse = None, None, 0
    for x in images:
        got = engine(x)
        want = ort(x)
        got = got if isinstance(got, (tuple, list)) else (got,)
        diff = [float((g - w).abs().max()) for g, w in zip(got, want)]
        big = [float(w.abs().max()) for w in want]
        worst = diff if worst is None else [max(a, b) for a, b in zip(worst, diff)]
        scale = big if scale is None else [max(a, b) for a, b in zip(scale, big)]
        sparse += engine.stats()["active_fraction"] < 1.0
    print(f"{model} on {clip}, {len(images)} frames at {tuple(images[0].shape[2:])}: "
          f"max |passrt exact@0 - ORT| per output {', '.join(f'{d:.2g}' for d in worst)} "
          f"(max |ORT| {', '.join(f'{s:.3g}' for s in scale)}); frames run sparse: {sparse}")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 50)
