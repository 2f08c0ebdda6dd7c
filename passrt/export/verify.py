"""Check an exported graph against the PyTorch engine on real frames (``passrt export --verify``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from passrt.errors import PassrtError
from passrt import contract


@dataclass
class Verification:
    frames: int
    max_abs_diff: float  # over every output value of every frame
    active_fraction_diff: float  # largest |engine - graph| of the per-frame executed fraction

    def line(self) -> str:
        return (f"verified on {self.frames} frames: max |engine - graph| = {self.max_abs_diff:.2e}, "
                f"active fraction within {self.active_fraction_diff:.1e}")


def load_frames(uri: str, count: int, preprocess, size: tuple[int, int]) -> list[torch.Tensor]:
    """``count`` frames of ``uri``, resized to (H, W) = ``size`` when they differ, preprocessed."""
    import cv2

    from passrt.runtime.sources import open_source

    frames = []
    with open_source(uri) as source:
        for frame in source:
            image = frame.image
            if image.shape[:2] != tuple(size):
                image = cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA)
            frames.append(preprocess(image))
            if len(frames) == count:
                break
    if not frames:
        raise PassrtError(f"{uri}: no frames could be decoded")
    return frames


def verify_export(path: Path | str, source: str = "vtest", frames: int = 10) -> Verification:
    """Run ``path`` (reference runner) and the engine it was exported from on the same frames."""
    from passrt.engine import SparseModel, make_policy
    from passrt.export.runner import ExportedStream
    from passrt.models import load_model

    stream = ExportedStream(path)
    meta = {p.key: p.value for p in stream.model.metadata_props}
    if contract.META_MODEL not in meta:
        raise PassrtError(f"{path} was not written by passrt export (no {contract.META_MODEL} metadata)")
    spec = load_model(meta[contract.META_MODEL])
    size = tuple(int(v) for v in meta[contract.META_INPUT_SIZE].split("x"))
    policy = json.loads(meta[contract.META_POLICY])
    name = policy.pop("name")
    if name != "dense":
        from dataclasses import fields

        from passrt.engine.policies import registry

        params = {f.name: policy[f.name] for f in fields(registry()[name]) if f.name in policy}
        engine = SparseModel(spec.module, make_policy(name, **params))
    else:
        engine = None
    worst, worst_active = 0.0, 0.0
    images = load_frames(source, frames, spec.preprocess, size)
    for x in images:
        with torch.inference_mode():
            expected = engine(x) if engine is not None else spec.module(x)
        expected = list(expected) if isinstance(expected, (list, tuple)) else [expected]
        got = stream(x)
        if len(got) != len(expected):
            raise RuntimeError(f"the graph has {len(got)} outputs, the model {len(expected)}")
        worst = max(worst, max(float((a - b).abs().max()) for a, b in zip(expected, got)))
        if engine is not None:
            worst_active = max(worst_active, abs(engine.stats()["active_fraction"] - stream.last_active_fraction))
    return Verification(len(images), worst, worst_active)
