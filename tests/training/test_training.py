"""Both training stages on a real clip (vtest, small frames): the loss goes down, checkpoints
resume exactly, fine-tuned weights travel with the gates, and the CLI works end to end."""

import json
import subprocess
import sys

import pytest
import torch

import passrt
from passrt.errors import PassrtError
from passrt.policies.gateset import load
from passrt.training.finetune import FinetuneOptions, finetune
from passrt.training.train import TrainOptions, train_gates

SMALL = (144, 192)


def _opts(tmp_path, name, **kw):
    base = dict(clips=["vtest@100:"], out=str(tmp_path / name), input_size=SMALL, max_frames=40, steps=6,
                checkpoint_every=2, design="paper")
    return TrainOptions(**{**base, **kw})


def test_training_reduces_the_loss_on_a_real_clip(tmp_path):
    gates = train_gates(_opts(tmp_path, "g.pt", steps=60, checkpoint_every=60), progress=False)
    losses = [h["loss"] for h in gates.info["history"]]
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < 0.8 * first, (first, last)
    skips = [h["skip"] for h in gates.info["history"][-10:]]
    assert 0.5 < sum(skips) / 10 < 1.0  # the budget term pulled the skip rate toward its 0.8 target


def test_resume_continues_exactly_where_a_straight_run_would_be(tmp_path):
    straight = train_gates(_opts(tmp_path, "straight.pt", steps=6), progress=False)
    train_gates(_opts(tmp_path, "resumed.pt", steps=4), progress=False)
    resumed = train_gates(_opts(tmp_path, "resumed.pt", steps=6), resume=True, progress=False)
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[k], v, rtol=0, atol=0)
    assert [h["step"] for h in resumed.info["history"]] == list(range(1, 7))
    assert load(tmp_path / "resumed.pt").info["steps"] == 6


def test_resume_refuses_gates_for_other_layers(tmp_path):
    train_gates(_opts(tmp_path, "g.pt", steps=2), progress=False)
    with pytest.raises(PassrtError, match="other layers or another model"):
        train_gates(_opts(tmp_path, "g.pt", steps=4, layers=["stem.0"]), resume=True, progress=False)


def test_finetuned_backbone_travels_with_the_gates(tmp_path):
    train_gates(_opts(tmp_path, "g.pt", steps=2), progress=False)
    tuned = finetune(FinetuneOptions(gates=str(tmp_path / "g.pt"), clips=["vtest@100:"], out=str(tmp_path / "f.pt"),
                                     input_size=SMALL, max_frames=20, steps=3, lr=1e-3), progress=False)
    assert len(tuned.info["finetune"]["history"]) == 3
    from passrt.models import load_model

    spec = load_model("ssdlite-pedestrian")
    engine = passrt.sparsify(spec.module, passrt.PassGates.load(tmp_path / "f.pt"))
    assert engine.model is not spec.module  # the caller's model is not modified
    changed = [k for k, v in engine.model.state_dict().items() if not torch.equal(v, spec.module.state_dict()[k])]
    assert changed and all(torch.equal(engine.model.state_dict()[k], tuned.backbone[k]) for k in changed)
    with pytest.raises(PassrtError, match="already carries a fine-tuned backbone"):
        finetune(FinetuneOptions(gates=str(tmp_path / "f.pt"), clips=["vtest"], out=str(tmp_path / "x.pt")),
                 progress=False)


def _passrt(*args):
    return subprocess.run([sys.executable, "-m", "passrt", *args], capture_output=True, text=True, timeout=900)


def test_cli_train_gates_then_run_and_bench_with_them(tmp_path):
    gates = tmp_path / "gates.pt"
    out = _passrt("train-gates", "--clips", "vtest@300:", "--input-size", "144x192", "--steps", "3",
                  "--max-frames", "12", "--out", str(gates))
    assert out.returncode == 0, out.stderr
    assert "wrote" in out.stdout and "common-mask gate" in out.stdout and gates.is_file()  # the default design
    out = _passrt("run", "--input", "vtest", "--headless", "--max-frames", "6", "--policy", "pass",
                  "--gates", str(gates), "--json", str(tmp_path / "run.json"))
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "run.json").read_text())["frames"] == 6
    out = _passrt("bench", "--input", "vtest", "--frames", "6", "--warmup", "1", "--no-onnxruntime",
                  "--policies", "dense,regiondrop,pass", "--gates", str(gates), "--json", str(tmp_path / "b.json"))
    assert out.returncode == 0, out.stderr
    result = json.loads((tmp_path / "b.json").read_text())["policies"]
    assert {"skip_rate", "mac_reduction"} <= set(result["pass"]) and result["pass"]["gate_macs"] > 0
    assert "R_p" in out.stdout


def test_torchrun_two_processes_train_one_set_of_gates(tmp_path):
    """DistributedDataParallel on CPU (gloo): what several GPUs do, with two processes."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    out = subprocess.run([*torchrun, "-m", "passrt", "train-gates", "--design", "paper", "--clips", "vtest@300:",
                          "--input-size", "144x192",
                          "--steps", "3", "--max-frames", "12", "--out", str(tmp_path / "g.pt")],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("wrote") == 1  # rank 0 reports and writes
    assert load(tmp_path / "g.pt").info["steps"] == 3


@pytest.mark.parametrize("args,message", [
    (["train-gates", "--clips", "nope.mp4"], "no such file"),
    (["train-gates", "--clips", "vtest@5:5"], "frame range 5:5 is empty"),
    (["train-gates", "--design", "paper", "--clips", "vtest", "--layers", "not.a.conv", "--max-frames", "3"],
     "cannot gate not.a.conv"),
    (["train-gates", "--clips", "vtest", "--layers", "stem.0", "--max-frames", "3"], "--layers applies to --design paper"),
    (["run", "--input", "vtest", "--headless", "--policy", "pass"], "needs gates"),
    (["run", "--input", "vtest", "--headless", "--policy", "pass", "--gates", "missing.pt"], "no such gates file"),
    (["finetune", "--gates", "missing.pt", "--clips", "vtest"], "no such gates file"),
    (["finetune", "--gates", "x.pt", "--clips", "vtest", "--loss", "nocolon"], "package.module:function"),
])
def test_bad_input_is_one_line(args, message, tmp_path):
    if args[0] == "finetune" and args[2] == "x.pt":
        train_gates(_opts(tmp_path, "x.pt", steps=1), progress=False)
        args = [a if a != "x.pt" else str(tmp_path / "x.pt") for a in args]
    out = _passrt(*args)
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1
