"""The streaming module returned by :func:`passrt.sparsify`: frame bookkeeping over one executor."""

from __future__ import annotations

import copy
import os

import torch
import torch.fx as fx
from torch import nn

from passrt.engine.program import ProgramExecutor
from passrt.engine.reference import ReferenceExecutor
from passrt.errors import PassrtError
from passrt.plan import build_plan, trace
from passrt.policies import Policy, make_policy

EXECUTORS = ("auto", "reference", "op")


class SparseModel:
    """Runs ``model`` frame by frame, recomputing only what the policy marks as changed.

    Call it with one (1, C, H, W) frame at a time; it returns what ``model`` returns.
    Every layer keeps its output from earlier frames (dense storage, sparse compute).
    Planning happens on the first frame of each input size; the plan then runs on one of two
    executors (:mod:`passrt.engine.reference`, :mod:`passrt.engine.program`).
    """

    def __init__(self, model: nn.Module, policy: Policy | str = "exact", dense_ops=(), executor: str = "auto",
                 **params):
        executor = params.pop("backend", executor)  # its name until the executors were split out
        if executor not in EXECUTORS:
            raise PassrtError(f"unknown executor '{executor}'; choose one of: {', '.join(EXECUTORS)}")
        self.executor_choice = executor
        self.policy = make_policy(policy, **params)
        self.model = _with_policy_weights(model, self.policy).eval()
        # Models may name their own helpers that are safe to run densely (imported ONNX graphs do).
        self.dense_ops = tuple(dense_ops) + tuple(getattr(self.model, "passrt_dense_ops", ()))
        self.graph: fx.GraphModule = trace(self.model)
        self.plan = None
        self.executor = None
        self._executor_note = None
        self._force_refresh = True
        self.frames = 0
        self._last: dict = {}
        self._totals = {"macs_executed": 0.0, "active_fraction": 0.0, "refreshes": 0}

    # ---- public API -----------------------------------------------------------------
    def __call__(self, x: torch.Tensor):
        if x.dim() != 4 or x.shape[0] != 1:
            raise PassrtError(f"a SparseModel takes one frame at a time, shaped (1, C, H, W); got {tuple(x.shape)}")
        with torch.inference_mode():
            refresh = self._prepare(x)
            outputs, record = self.executor.run(x, refresh)
        self._record(record)
        return outputs

    def reset(self) -> None:
        """Forget all caches: the next frame runs dense."""
        self._force_refresh = True
        self.policy.reset()

    def refresh(self) -> None:
        """Run the next frame dense and restart the caches from it; the policy keeps what it has
        learned of the stream (e.g. its noise level)."""
        self._force_refresh = True

    def tile_masks(self) -> dict:
        """Per layer (by label), the (Ht, Wt) bool mask of tiles recomputed on the last frame."""
        return self.executor.tile_masks() if self.executor is not None else {}

    def stats(self) -> dict:
        """Figures of the last frame, plus means over all frames since construction."""
        n = max(self.frames, 1)
        name = self.executor.name if self.executor is not None else ReferenceExecutor.name
        return {
            **self._last,
            "frames": self.frames,
            "refreshes": self._totals["refreshes"],
            "active_fraction_mean": self._totals["active_fraction"] / n,
            "macs_executed_mean": self._totals["macs_executed"] / n,
            "policy": self.policy.describe(),
            "executor": name,
            **({"executor_note": self._executor_note} if self._executor_note else {}),
        }

    # ---- internals ------------------------------------------------------------------
    def _prepare(self, x: torch.Tensor) -> bool:
        refresh = self._force_refresh
        if self.plan is None or tuple(x.shape) != self.plan.input_shape:
            self.plan = build_plan(self.graph, x, self.policy.tile_for, self.dense_ops)
            self.policy.reset()
            self.executor = self._choose_executor(x)
            refresh = True
        every = self.policy.refresh_every
        if every and self.frames % every == 0:
            refresh = True
        self._force_refresh = False
        return refresh

    def _choose_executor(self, x: torch.Tensor):
        """The compiled op (through :class:`~passrt.engine.program.ProgramExecutor`) or the reference.

        'auto' takes the op for CUDA tensors and the reference for CPU tensors: on CPU the
        reference's gathered GEMMs are faster than the op's direct loops (benchmarks/RESULTS.md).
        """
        from passrt.kernels import extension

        self._executor_note = None
        reason = None
        if self.executor_choice == "reference":
            pass
        elif not _has_mask_source(self.policy):
            reason = (f"policy '{self.policy.name}' runs on the reference executor only; the op executor runs "
                      "the policies with a traceable mask source (regiondrop, pass)")
        elif self.executor_choice == "auto" and x.device.type != "cuda":
            reason = "CPU tensors: the reference executor is the faster CPU path"
        elif not extension.load():
            reason = f"the passrt op is {extension.status()}"
        elif x.device.type == "cuda" and not extension.status().endswith("CPU+CUDA op"):
            reason = f"the passrt op has no CUDA kernels ({extension.status()})"
        if reason is None and self.executor_choice != "reference":
            return ProgramExecutor(self.plan, self.policy, x.device, x.dtype)
        if reason is not None and self.executor_choice == "op":
            raise PassrtError(f"executor 'op' is not available: {reason}")
        if x.device.type != "cpu":
            raise PassrtError(f"the reference executor runs on CPU tensors; for {x.device} tensors the compiled op "
                              f"is needed, and {reason or 'executor=reference was asked for'}")
        return ReferenceExecutor(self.plan, self.policy, x.dtype)

    def _record(self, record):
        active = record.macs_executed / record.macs_dense if record.macs_dense else 1.0
        conv_skips = [v["skip_rate"] for v in record.layers.values() if v["kind"].startswith("conv")]
        self._last = {
            "refresh": record.refresh,
            "input_active_fraction": 1.0 if record.refresh else record.input_fraction,
            "active_fraction": active,
            # PASS's metrics, for every policy: R_p, the share of each conv's output cells skipped,
            # averaged over the convs; R_m, the share of the dense MACs not executed, the policy's
            # own (gates) counted as executed.
            "skip_rate": sum(conv_skips) / len(conv_skips) if conv_skips else None,
            "mac_reduction": 1.0 - active,
            "macs_dense": record.macs_dense,
            "macs_executed": record.macs_executed,
            "layers": record.layers,
            **self.policy.frame_stats(),
        }
        self.frames += 1
        self._totals["refreshes"] += int(record.refresh)
        self._totals["active_fraction"] += active
        self._totals["macs_executed"] += record.macs_executed


def _has_mask_source(policy: Policy) -> bool:
    return type(policy).mask_source is not Policy.mask_source


def _with_policy_weights(model: nn.Module, policy: Policy) -> nn.Module:
    """A fine-tuned backbone that comes with the policy (PASS-F gates) runs on a copy of ``model``."""
    weights = getattr(getattr(policy, "net", None), "backbone", None)
    if weights is None:
        return model
    tuned = copy.deepcopy(model)
    try:
        tuned.load_state_dict(weights)
    except RuntimeError as e:
        raise PassrtError(f"the gates carry fine-tuned weights for another model: {str(e).splitlines()[0]}") from None
    return tuned


def sparsify(model: nn.Module | str | os.PathLike, policy: Policy | str = "exact", dense_ops=(),
             executor: str = "auto", **params) -> SparseModel:
    """Wrap ``model`` (a module, or the path of an ``.onnx`` file) for temporally sparse streaming inference.

    ``policy`` is a name ('dense', 'exact', 'regiondrop', 'layerwise', 'pass') with its parameters
    as keyword arguments (e.g. ``threshold=0.08``), or a Policy object. ``dense_ops`` lists
    extra modules/functions/method names that are safe to run densely. ``executor``: 'reference'
    (pure PyTorch, CPU), 'op' (passrt's compiled op, CPU or CUDA; regiondrop and pass), or 'auto'
    (the op for CUDA tensors, the reference for CPU tensors); ``stats()['executor']`` says which ran.
    """
    if isinstance(model, (str, os.PathLike)):
        from passrt.models.onnx_import import load_onnx

        model, _ = load_onnx(model)  # returns the graph's outputs as a tuple, in the file's order
    return SparseModel(model, policy, dense_ops, executor, **params)
