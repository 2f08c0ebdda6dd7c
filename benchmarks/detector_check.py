"""The SSDLite detector before and after the anchor fix, on real clips (no labels needed).

Before: TF's anchor generator at the run-time size (anchors scale with the image) and every
head. After: anchors keep their training size in pixels, and the whole-image head is used only
where its map is 1x1 (passrt.models.anchors). For each clip: detections, and how many cover
more than 10 % of the image, over the same frames; and agreement (AP@0.5) of each with the
model's own pipeline (a 300x300 resize, as TF ran it), the one reference we have without labels.

    python benchmarks/detector_check.py [--frames 30] [--image docs/images/detector-before-after.jpg]
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch

from passrt import assets
from passrt.metrics import average_precision
from passrt.models import load_model
from passrt.models.anchors import TRAIN_SIDE, generate_anchors
from passrt.models.postprocess import Detections, detect
from passrt.runtime.frames import read_frames


def before(outputs, hw) -> Detections:
    """What passrt did until the fix: anchors as fractions of this image (TF's generator), every head."""
    anchors = generate_anchors(hw).copy()
    centre, half = (anchors[:, :2] + anchors[:, 2:]) / 2, (anchors[:, 2:] - anchors[:, :2]) / 2
    half *= min(hw) / TRAIN_SIDE  # undo the fix: sizes relative to the shorter side again
    return detect(*outputs, np.concatenate([centre - half, centre + half], 1), hw)


def count(dets, hw):
    big = sum(int((((d.boxes[:, 2:] - d.boxes[:, :2]).prod(1)) > 0.1 * hw[0] * hw[1]).sum()) for d in dets)
    return sum(len(d) for d in dets), big


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--clips", default="vtest,bigbuckbunny,carphone")
    ap.add_argument("--image", default=None, help="write a before/after picture of vtest here")
    args = ap.parse_args()
    torch.set_num_threads(2)
    spec = load_model("ssdlite-pedestrian")
    print("| clip | size | detections before / after | > 10 % of the image before / after "
          "| AP@0.5 vs 300x300 pipeline before / after |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.clips.split(","):
        clip = read_frames(str(assets.fetch(name)), count=args.frames)
        hw = clip.frames[0].shape[:2]
        old, new, ref = [], [], []
        with torch.no_grad():
            for frame in clip.frames:
                out = spec.module(spec.preprocess(frame))
                old.append(before(out, hw))
                new.append(spec.postprocess(out, hw))
                small = cv2.resize(frame, (TRAIN_SIDE, TRAIN_SIDE), interpolation=cv2.INTER_AREA)
                ref.append(detect(*spec.module(spec.preprocess(small)), generate_anchors((TRAIN_SIDE,) * 2), hw))
        agree = [average_precision([(d.boxes, d.scores) for d in dets], [r.boxes for r in ref]) for dets in (old, new)]
        (n0, b0), (n1, b1) = count(old, hw), count(new, hw)
        print(f"| {name} | {hw[1]}x{hw[0]} | {n0} / {n1} | {b0} / {b1} | {agree[0]:.3f} / {agree[1]:.3f} |")
        if args.image and name == "vtest":
            k = len(clip.frames) // 3
            panels = []
            for dets, label in ((old, "before"), (new, "after")):
                img = clip.frames[k].copy()
                for (x1, y1, x2, y2), s in zip(dets[k].boxes.astype(int), dets[k].scores):
                    cv2.rectangle(img, (x1, y1), (x2, y2), (0, 0, 255), 2)
                    cv2.putText(img, f"{s:.2f}", (x1 + 2, y1 + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 255), 1)
                cv2.putText(img, label, (10, 30), cv2.FONT_HERSHEY_SIMPLEX, 1.0, (255, 255, 255), 2)
                panels.append(img)
            cv2.imwrite(args.image, cv2.resize(np.hstack(panels), None, fx=0.5, fy=0.5), [cv2.IMWRITE_JPEG_QUALITY, 80])


if __name__ == "__main__":
    main()
