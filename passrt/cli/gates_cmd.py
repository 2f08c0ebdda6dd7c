"""`passrt train-gates` and `passrt finetune`: PASS's two training stages. Their options are the
fields of :class:`~passrt.training.options.TrainOptions` / ``FinetuneOptions`` (and the gate's
:class:`~passrt.policies.gate_config.GateConfig`), generated, not typed again here."""

from __future__ import annotations

import os

from passrt.cli.args import ModelArgs, add_options, options_from

MODEL = ModelArgs()


def register(sub) -> None:
    from passrt.training.options import FinetuneOptions, TrainOptions

    p = sub.add_parser(
        "train-gates", help="train PASS gates on unlabeled clips (stage 1, backbone frozen)",
        description="Train PASS gates on unlabeled video, self-supervised (docs/PASS.md). Default design 'common': "
                    "one learned block mask per frame at the input, warm-started by imitating regiondrop, then "
                    "triplets on what inference reuses plus a budget term. '--design paper': one gate per gated "
                    "conv, triplets built from each gate's mask, plus a skip-rate budget term. Writes a gates file for `passrt run --policy pass --gates FILE`. "
                    "CPU by default, CUDA when present; several GPUs (paper design): torchrun "
                    "--nproc_per_node N -m passrt train-gates ...")
    MODEL.add_to(p)
    add_options(p, TrainOptions)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out (up to --steps)")
    p.set_defaults(func=train_main)

    p = sub.add_parser(
        "finetune", help="fine-tune the model under frozen PASS gates (stage 2, optional)",
        description="Fine-tune the backbone on the inputs its gates give it (skipped patches replaced by the earlier "
                    "frame's), with a task loss (--loss) or, without labels, distillation from the dense model. "
                    "Writes a gates file that carries the fine-tuned weights; run it like any gates file.")
    add_options(p, FinetuneOptions)
    p.set_defaults(func=finetune_main)


def train_main(args) -> int:
    from passrt.training.options import TrainOptions
    from passrt.training.train import train_gates

    opts = options_from(args, TrainOptions, model=MODEL.parse(args))
    gates = train_gates(opts, resume=args.resume, progress=True)  # long jobs: progress in logs too
    if os.environ.get("RANK", "0") != "0":  # torchrun: one report, from rank 0
        return 0
    last = (gates.info.get("history") or [{}])[-1]
    if opts.design == "common":
        warm = gates.info.get("warm") or {}
        print(f"wrote {args.out}: common-mask gate; warm start IoU with regiondrop {warm.get('iou', float('nan')):.3f}; "
              f"step {last.get('step', 0)}, loss {last.get('loss', float('nan')):.4f}, kept blocks "
              f"{last.get('keep', float('nan')):.3f} (regiondrop {last.get('rule_keep', float('nan')):.3f})")
    else:
        print(f"wrote {args.out}: {len(gates.labels())} gates ({', '.join(gates.labels())}); step {last.get('step')}, "
              f"loss {last.get('loss', float('nan')):.4f}, skip {last.get('skip', float('nan')):.2f}")
    print(f"next: passrt run --input vtest --policy pass --gates {args.out}")
    return 0


def finetune_main(args) -> int:
    from passrt.cli.args import positive
    from passrt.training.finetune import finetune
    from passrt.training.options import FinetuneOptions

    positive("--steps", args.steps, allow_none=False)
    gates = finetune(options_from(args, FinetuneOptions), progress=True)
    if os.environ.get("RANK", "0") != "0":
        return 0
    last = gates.info["finetune"]["history"][-1]
    print(f"wrote {args.out}: gates + fine-tuned {gates.model}; final loss {last['loss']:.5f}")
    return 0
