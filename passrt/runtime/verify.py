"""Check an exported graph against the PyTorch engine on real frames (``passrt export --verify``).

It runs a model on a clip, so it lives with the runtime, above export."""

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


def verify_export(path: Path | str, source: str = "vtest", frames: int = 10) -> Verification:
    """Run ``path`` (reference runner) and the engine it was exported from on the same frames."""
    from passrt.engine import SparseModel
    from passrt.export.runner import ExportedStream
    from passrt.models import load_model
    from passrt.policies import PolicySpec
    from passrt.runtime.frames import read_frames

    stream = ExportedStream(path)
    meta = {p.key: p.value for p in stream.model.metadata_props}
    if contract.META_MODEL not in meta:
        raise PassrtError(f"{path} was not written by passrt export (no {contract.META_MODEL} metadata)")
    spec = load_model(meta[contract.META_MODEL])
    size = tuple(int(v) for v in meta[contract.META_INPUT_SIZE].split("x"))
    policy = PolicySpec.from_description(json.loads(meta[contract.META_POLICY]))
    engine = SparseModel(spec.module, policy.build()) if policy.name != "dense" else None
    worst, worst_active = 0.0, 0.0
    images = read_frames(source, frames, size, preprocess=spec.preprocess).frames
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
