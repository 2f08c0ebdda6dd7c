"""The streaming module returned by :func:`passrt.sparsify`: frame bookkeeping over one executor."""

from __future__ import annotations

import copy
import os

import torch
import torch.fx as fx
from torch import nn

from passrt.engine.native import NativeExecutor
from passrt.engine.native_cuda import DeviceNativeExecutor
from passrt.engine.program import ProgramExecutor
from passrt.engine.reference import ReferenceExecutor
from passrt.errors import PassrtError
from passrt.plan import build_plan, trace
from passrt.policies import Policy, make_policy

EXECUTORS = ("auto", "reference", "native", "op")


class SparseModel:
    """Runs ``model`` frame by frame, recomputing only what the policy marks as changed.

    Call it with one (1, C, H, W) frame at a time; it returns what ``model`` returns.
    Every layer keeps its output from earlier frames (dense storage, sparse compute).
    Planning happens on the first frame of each input size; the plan then runs on one of two
    executors (:mod:`passrt.engine.reference` and its :mod:`passrt.engine.native` variant with C++ conv
    kernels, :mod:`passrt.engine.program`).
    """

    def __init__(self, model: nn.Module, policy: Policy | str = "exact", dense_ops=(), executor: str = "auto",
                 dense_engine=None, dense_above: float = 0.5, cuda_graphs: bool = True, **params):
        executor = params.pop("backend", executor)  # its name until the executors were split out
        if executor not in EXECUTORS:
            raise PassrtError(f"unknown executor '{executor}'; choose one of: {', '.join(EXECUTORS)}")
        self.executor_choice = executor
        self.cuda_graphs = cuda_graphs
        if not 0.0 < dense_above <= 1.0:
            raise PassrtError(f"dense_above must be in (0, 1], got {dense_above}")
        self.dense_engine, self.dense_above = dense_engine, dense_above
        self.policy = make_policy(policy, **params)
        self.model = _with_policy_weights(model, self.policy).eval()
        # Models may name their own helpers that are safe to run densely (imported ONNX graphs do).
        self.dense_ops = tuple(dense_ops) + tuple(getattr(self.model, "passrt_dense_ops", ()))
        self.graph: fx.GraphModule = trace(self.model)
        # input shape -> plan; shared with the streams of new_stream(): a plan (steps, folded
        # weights, index tables) holds no per-frame state, the executors hold the caches.
        self._plans: dict = {}
        self.plan = None
        self.executor = None
        # Makes the native executor of a plan (engine/batched.py's StreamBatch replaces it: streams batched
        # together get caches stacked in one tensor).
        self.native_executor = NativeExecutor
        self._executor_note = None
        self._force_refresh = True
        self.frames = 0
        self._last: dict = {}
        self._totals = {"macs_executed": 0.0, "active_fraction": 0.0, "refreshes": 0, "dense_engine_frames": 0,
                        "dense_engine_fills": 0}

    # ---- public API -----------------------------------------------------------------
    def __call__(self, x: torch.Tensor):
        if x.dim() != 4 or x.shape[0] != 1:
            raise PassrtError(f"a SparseModel takes one frame at a time, shaped (1, C, H, W); got {tuple(x.shape)}")
        with torch.inference_mode():
            refresh = self._prepare(x)
            outputs, record = self.executor.run(x, refresh)
        self._record(record)
        return outputs

    def new_stream(self, policy: Policy | None = None) -> "SparseModel":
        """Another stream on the same model: the module (one copy of the weights), its trace and its
        plans are shared; caches, policy state and statistics are the new stream's own. ``policy``:
        a fresh policy of the same kind and parameters (a policy holds per-stream state, e.g. its noise
        level, so two streams never share one)."""
        if policy is None or policy is self.policy:
            raise PassrtError("new_stream() needs a fresh policy object (policies hold per-stream state)")
        other = copy.copy(self)
        other.policy = policy
        other.plan = other.executor = other._executor_note = None
        other.native_executor = NativeExecutor  # not a member of this stream's batch (engine/batched.py)
        other._force_refresh, other.frames, other._last = True, 0, {}
        other._totals = dict.fromkeys(self._totals, 0)
        return other

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
            "dense_engine_frames": self._totals["dense_engine_frames"],
            "dense_engine_fills": self._totals["dense_engine_fills"],
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
            key = (tuple(x.shape), x.dtype, x.device)
            if key not in self._plans:
                self._plans[key] = build_plan(self.graph, x, self.policy.tile_for, self.dense_ops)
            self.plan = self._plans[key]
            self.policy.reset()
            self.executor = self._choose_executor(x)
            refresh = True
        every = self.policy.refresh_every
        if every and self.frames % every == 0:
            refresh = True
        self._force_refresh = False
        return refresh

    def _choose_executor(self, x: torch.Tensor):
        """The native executor, the compiled op through :class:`ProgramExecutor`, or the reference.

        'auto' takes the native executor: for CPU tensors the reference with its convs in C++ (faster:
        benchmarks/RESULTS.md), for CUDA tensors :class:`DeviceNativeExecutor` (NHWC tile kernels, masks
        on the device, a CUDA graph per frame; policies with a mask source); on CPU the reference when
        the op cannot be built (``stats()['executor_note']`` says why).
        """
        from passrt.kernels import extension

        self._executor_note = None
        choice, cuda = self.executor_choice, x.device.type == "cuda"
        if choice == "auto":
            choice = "native"
        reason = None
        if (choice == "op" or choice == "native" and cuda) and not _has_mask_source(self.policy):
            reason = (f"policy '{self.policy.name}' runs on the reference executor only; the {choice} executor runs "
                      f"the policies with a traceable mask source{' on CUDA' if cuda else ''}")
        elif choice in ("op", "native") and not extension.load():
            reason = f"the passrt op is {extension.status()}"
        elif choice in ("op", "native") and cuda and not extension.status().endswith("CPU+CUDA op"):
            reason = f"the passrt op has no CUDA kernels ({extension.status()})"
        elif choice == "native" and cuda and x.dtype not in (torch.float32, torch.float16):
            reason = f"the native executor runs float32 or float16 CUDA tensors, got {x.dtype}"
        elif choice == "native" and not cuda and x.dtype != torch.float32:
            reason = "the native executor runs float32 CPU tensors"
        if reason is None and choice == "op":
            if self.dense_engine is not None:
                self._executor_note = "the op executor runs every frame itself (no dense engine)"
            return ProgramExecutor(self.plan, self.policy, x.device, x.dtype)
        if reason is None and choice == "native" and cuda:
            if self.dense_engine is not None:
                self._executor_note = "the native executor on CUDA runs every frame itself (no dense engine)"
            return DeviceNativeExecutor(self.plan, self.policy, x.device, x.dtype, self.cuda_graphs)
        if reason is None and choice == "native":
            return self.native_executor(self.plan, self.policy, x.dtype, self.dense_engine, self.dense_above)
        if reason is not None and self.executor_choice != "auto":
            raise PassrtError(f"executor '{choice}' is not available: {reason}")
        if cuda:
            raise PassrtError(f"the reference executor runs on CPU tensors; for {x.device} tensors the compiled op "
                              f"is needed, and {reason or 'executor=reference was asked for'}")
        self._executor_note = reason
        return ReferenceExecutor(self.plan, self.policy, x.dtype, self.dense_engine, self.dense_above)

    def _record(self, record):
        active = record.macs_executed / record.macs_dense if record.macs_dense else 1.0
        conv_skips = [v["skip_rate"] for v in record.layers.values() if v["kind"].startswith("conv")]
        self._last = {
            "refresh": record.refresh,
            "dense_engine": record.dense_engine,
            "dense_engine_filled": record.filled,
            "input_active_fraction": 1.0 if record.refresh else record.input_fraction,
            "active_fraction": active,
            # PASS's metrics, for every policy: R_p, the share of each conv's output cells skipped,
            # averaged over the convs; R_m, the share of the dense MACs not executed, the policy's
            # own (gates) counted as executed.
            # (None: the executor reports no per-layer figures, e.g. the op executor; a dense engine's frame: 0)
            "skip_rate": sum(conv_skips) / len(conv_skips) if conv_skips else (0.0 if record.dense_engine else None),
            "mac_reduction": 1.0 - active,
            "macs_dense": record.macs_dense,
            "macs_executed": record.macs_executed,
            "layers": record.layers,
            **self.policy.frame_stats(),
        }
        self.frames += 1
        self._totals["refreshes"] += int(record.refresh)
        self._totals["dense_engine_frames"] += int(record.dense_engine)
        self._totals["dense_engine_fills"] += int(record.filled)
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
             executor: str = "auto", dense_engine=None, dense_above: float = 0.5, cuda_graphs: bool = True,
             **params) -> SparseModel:
    """Wrap ``model`` (a module, or the path of an ``.onnx`` file or a Darknet ``.cfg`` with its
    ``.weights`` beside it) for temporally sparse streaming inference.

    ``policy`` is a name ('dense', 'exact', 'regiondrop', 'layerwise', 'pass') with its parameters
    as keyword arguments (e.g. ``threshold=0.08``), or a Policy object. ``dense_ops`` lists
    extra modules/functions/method names that are safe to run densely. ``executor``: 'reference'
    (pure PyTorch, CPU), 'native' (passrt's tile kernels: on CPU float32 the reference with its convs in C++;
    on CUDA float32/float16 the NHWC tile kernels with the masks on the device), 'op'
    (passrt's compiled op through the exported program, CPU or CUDA), or 'auto' (native,
    the reference on CPU when the op cannot be built); ``stats()['executor']`` says which ran.
    ``cuda_graphs``: the native executor on CUDA replays each frame as a CUDA graph (False: launches
    every kernel from Python).
    ``dense_engine``: a callable frame -> the model's outputs (e.g. ONNX Runtime's session, which
    ``passrt run``/``bench`` pass on CPU) that answers the frames that must be dense or changed over
    more than ``dense_above`` of the input (reference and native executors; see
    :class:`~passrt.engine.reference.ReferenceExecutor`).
    """
    if isinstance(model, (str, os.PathLike)):
        from passrt.models import module_from_file

        model = module_from_file(model)  # returns the file's outputs as a tuple, in its order
    return SparseModel(model, policy, dense_ops, executor, dense_engine, dense_above, cuda_graphs, **params)
