"""What the two training stages take (torch-free: ``passrt train-gates --help`` builds its options
from these fields)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from passrt.options import comma_list, option, parse_size
from passrt.policies.gate_config import GateConfig

CLIPS_HELP = ("unlabeled clips to train on: files or asset names (vtest, sports2d, pose2sim, franck, marketstreet, "
              "bigbuckbunny, carphone), each optionally "
              "with a frame range to hold evaluation frames out, e.g. vtest@200: (frames 200 to the end)")
DEVICE = dict(choices=("auto", "cpu", "cuda"))
TILES = {"tile_px": 16, "min_tile": 1, "max_tile": 8}  # the engine's defaults: patches match its tiles


def plain(value):
    """Options as plain JSON-like values (tuples to lists), loadable with weights_only."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


@dataclass
class TrainOptions:
    clips: list[str] = option(None, CLIPS_HELP, nargs="+", required=True, metavar="CLIP")
    design: str = option("common", "'common': one learned mask per frame at the input (default); 'paper': a gate per "
                         "gated conv, as published (docs/PASS.md)", choices=("common", "paper"))
    model: str = "ssdlite-pedestrian"
    out: str = option("gates.pt", "gates file to write; checkpoints go here too", flags=("-o",))
    input_size: Optional[tuple[int, int]] = option(
        None, "train at this frame size, HxW (default: the first clip's); the default 'conv' gates work at any size "
        "afterwards", type=parse_size, metavar="HxW")
    steps: int = option(300, "training steps, one frame pair each (common design: of the triplet stage, after the "
                        "warm start)")
    warm_steps: int = option(400, "common design: steps of the warm start (imitating regiondrop), batches of 16 frames")
    warm_lr: float = option(1e-2, "common design: Adam learning rate of the warm start")
    reduce_keep: float = option(0.3, "common design: the budget asks for this share fewer kept blocks than the "
                                "regiondrop rule keeps on each pair")
    cache_frames: int = option(32, "common design: reference frames whose dense layer outputs are computed once and "
                               "kept (float16, about 83 MB each at 768x576 on SSDLite)")
    lr: float = option(2e-3, "AdamW learning rate")
    # In relative RMS units of the model's outputs (d(a, p) and d(a, n) are ~0.1 on vtest). A margin
    # of 1.0 keeps the hinge always open; on vtest it did not help (benchmarks/RESULTS.md).
    margin: float = option(0.05, "triplet margin, in relative RMS units of the model's outputs")
    budget_weight: float = option(1.0, "weight of the budget term")
    target_skip: float = option(0.8, "paper design: share of patches each gate is asked to skip (budget term)")
    max_gap: int = option(3, "pairs are (frame t, frame t-d), d in 1..N")
    max_frames: int = option(400, "frames read per clip (into memory, once)")
    seed: int = option(0, "random seed")
    checkpoint_every: int = option(50, "write --out every N steps")
    layers: Optional[list[str]] = option(
        None, "comma-separated module paths of the convs to gate (default: at each input resolution, the conv with "
        "the fewest input channels)", type=comma_list)
    gate: GateConfig = option(help="", factory=GateConfig)  # its own fields are the gate's options
    device: str = option("auto", "auto: CUDA when present, else CPU", **DEVICE)


@dataclass
class FinetuneOptions:
    gates: str = option(None, "pre-trained gates (from `passrt train-gates`)", required=True)
    clips: list[str] = option(None, CLIPS_HELP, nargs="+", required=True, metavar="CLIP")
    out: str = option("gates-finetuned.pt", "gates file to write", flags=("-o",))
    input_size: Optional[tuple[int, int]] = option(None, "frame size, HxW (default: the first clip's)",
                                                   type=parse_size, metavar="HxW")
    steps: int = option(200, "training steps")
    lr: float = option(1e-5, "Adam learning rate")
    skip_above: float = 0.5
    max_gap: int = option(3, "pair gap 1..N")
    max_frames: int = option(400, "frames read per clip")
    seed: int = option(0, "random seed")
    device: str = option("auto", "auto: CUDA when present", **DEVICE)
    loss: Optional[str] = option(
        None, "task loss fn(outputs, teacher_outputs, frame) -> scalar (docs/PASS.md); default: distillation from "
        "the dense model's outputs", metavar="MODULE:FUNCTION")
