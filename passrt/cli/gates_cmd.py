"""`passrt train-gates` and `passrt finetune`: PASS's two training stages."""

from __future__ import annotations

import os

from passrt.cli import args as cli_args
from passrt.errors import PassrtError

CLIPS_HELP = ("unlabeled clips to train on: files or asset names (vtest, bigbuckbunny, carphone), each optionally "
              "with a frame range to hold evaluation frames out, e.g. vtest@200: (frames 200 to the end)")


def register(sub) -> None:
    _register_train(sub)
    _register_finetune(sub)


def _register_train(sub) -> None:
    from passrt.gates.gate import GateConfig
    from passrt.gates.train import TrainOptions

    d, g = TrainOptions(clips=[]), GateConfig()
    p = sub.add_parser(
        "train-gates", help="train PASS gates on unlabeled clips (stage 1, backbone frozen)",
        description="Train one PASS gate per gated conv on unlabeled video, self-supervised: triplets built from "
                    "each gate's mask, judged by the frozen model's outputs, plus a skip-rate budget term "
                    "(docs/PASS.md). Writes a gates file for `passrt run --policy pass --gates FILE`. "
                    "CPU by default, CUDA when present; several GPUs: torchrun --nproc_per_node N -m passrt "
                    "train-gates ...")
    cli_args.add_model(p)
    p.add_argument("--clips", nargs="+", required=True, metavar="CLIP", help=CLIPS_HELP)
    p.add_argument("--out", "-o", default=d.out, help=f"gates file to write (default {d.out}); checkpoints go here too")
    p.add_argument("--input-size", metavar="HxW",
                   help="train at this frame size (default: the first clip's); the default 'conv' gates work at "
                        "any size afterwards")
    p.add_argument("--steps", type=int, default=d.steps, help=f"training steps, one frame pair each (default {d.steps})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"AdamW learning rate (default {d.lr})")
    p.add_argument("--target-skip", type=float, default=d.target_skip,
                   help=f"share of patches each gate is asked to skip (budget term; default {d.target_skip})")
    p.add_argument("--budget-weight", type=float, default=d.budget_weight,
                   help=f"weight of the budget term (default {d.budget_weight})")
    p.add_argument("--margin", type=float, default=d.margin,
                   help=f"triplet margin, in relative RMS units of the model's outputs (default {d.margin})")
    p.add_argument("--max-gap", type=int, default=d.max_gap,
                   help=f"pairs are (frame t, frame t-d), d in 1..N (default {d.max_gap})")
    p.add_argument("--max-frames", type=int, default=d.max_frames, help=f"frames read per clip (default {d.max_frames})")
    p.add_argument("--layers", help="comma-separated module paths of the convs to gate (default: at each input "
                                    "resolution, the conv with the fewest input channels)")
    p.add_argument("--channels", type=int, default=g.channels, help=f"gate width C (default {g.channels})")
    p.add_argument("--depth", type=int, default=g.depth, help=f"gate mixer blocks (default {g.depth})")
    p.add_argument("--hidden", type=int, default=g.hidden, help=f"gate classifier hidden size (default {g.hidden})")
    p.add_argument("--temperature", type=float, default=g.temperature,
                   help=f"Gumbel temperature (default {g.temperature})")
    p.add_argument("--classifier", choices=("conv", "linear"), default=g.classifier,
                   help="'conv': per patch, any input size (default); 'linear': the paper's, one input size")
    p.add_argument("--normalise", choices=("sigmoid", "minmax"), default=g.normalise,
                   help="'sigmoid' (default) or the paper's per-frame 'minmax' normalisation of the logits")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help=f"write --out every N steps (default {d.checkpoint_every})")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out (up to --steps)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CUDA when present, else CPU")
    p.set_defaults(func=train_main)


def _register_finetune(sub) -> None:
    from passrt.gates.finetune import FinetuneOptions

    d = FinetuneOptions(gates="", clips=[])
    p = sub.add_parser(
        "finetune", help="fine-tune the model under frozen PASS gates (stage 2, optional)",
        description="Fine-tune the backbone on the inputs its gates give it (skipped patches replaced by the earlier "
                    "frame's), with a task loss (--loss) or, without labels, distillation from the dense model. "
                    "Writes a gates file that carries the fine-tuned weights; run it like any gates file.")
    p.add_argument("--gates", required=True, help="pre-trained gates (from `passrt train-gates`)")
    p.add_argument("--clips", nargs="+", required=True, metavar="CLIP", help=CLIPS_HELP)
    p.add_argument("--out", "-o", default=d.out, help=f"gates file to write (default {d.out})")
    p.add_argument("--input-size", metavar="HxW", help="frame size (default: the first clip's)")
    p.add_argument("--steps", type=int, default=d.steps, help=f"training steps (default {d.steps})")
    p.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default {d.lr})")
    p.add_argument("--loss", metavar="MODULE:FUNCTION",
                   help="task loss fn(outputs, teacher_outputs, frame) -> scalar (docs/PASS.md); default: "
                        "distillation from the dense model's outputs")
    p.add_argument("--max-gap", type=int, default=d.max_gap, help=f"pair gap 1..N (default {d.max_gap})")
    p.add_argument("--max-frames", type=int, default=d.max_frames, help=f"frames read per clip (default {d.max_frames})")
    p.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: CUDA when present")
    p.set_defaults(func=finetune_main)


def train_main(args) -> int:
    from passrt.gates.gate import GateConfig
    from passrt.gates.train import TrainOptions, train_gates

    config = GateConfig(args.channels, args.depth, args.hidden, args.temperature, args.classifier, args.normalise)
    opts = TrainOptions(clips=args.clips, model=args.model, out=args.out, input_size=_size(args),
                        steps=args.steps, lr=args.lr, margin=args.margin, budget_weight=args.budget_weight,
                        target_skip=args.target_skip, max_gap=args.max_gap, max_frames=args.max_frames,
                        seed=args.seed, checkpoint_every=args.checkpoint_every, gate=config, device=args.device,
                        layers=[s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else None)
    gates = train_gates(opts, resume=args.resume, progress=True)  # long jobs: progress in logs too
    if os.environ.get("RANK", "0") != "0":  # torchrun: one report, from rank 0
        return 0
    last = gates.info.get("history", [{}])[-1]
    print(f"wrote {args.out}: {len(gates.labels())} gates ({', '.join(gates.labels())}); step {last.get('step')}, "
          f"loss {last.get('loss', float('nan')):.4f}, skip {last.get('skip', float('nan')):.2f}")
    print(f"next: passrt run --input vtest --policy pass --gates {args.out}")
    return 0


def finetune_main(args) -> int:
    from passrt.gates.finetune import FinetuneOptions, finetune

    if args.steps < 1:
        raise PassrtError("--steps must be at least 1")
    opts = FinetuneOptions(gates=args.gates, clips=args.clips, out=args.out, input_size=_size(args),
                           steps=args.steps, lr=args.lr, max_gap=args.max_gap, max_frames=args.max_frames,
                           seed=args.seed, device=args.device, loss=args.loss)
    gates = finetune(opts, progress=True)
    if os.environ.get("RANK", "0") != "0":
        return 0
    last = gates.info["finetune"]["history"][-1]
    print(f"wrote {args.out}: gates + fine-tuned {gates.model}; final loss {last['loss']:.5f}")
    return 0


def _size(args):
    return cli_args.parse_size(args.input_size) if args.input_size else None
