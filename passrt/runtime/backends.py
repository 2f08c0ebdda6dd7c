"""Engines behind one call signature: ``engine(x) -> model outputs``, ``engine.stats()``.

- ``torch-dense``: the model itself (the baseline every speed-up is quoted against);
- ``torch-sparse``: the model under :func:`passrt.sparsify` with a mask policy;
- ``onnxruntime``: the dense model exported to ONNX and run by ONNX Runtime on the CPU,
  the dense engine a CPU user would otherwise pick.
"""

from __future__ import annotations

import copy
import hashlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

from passrt import assets
from passrt.engine import SparseModel, make_policy
from passrt.errors import PassrtError


class TorchDense:
    """The dense baseline, in channels-last layout: PyTorch's faster CPU layout for these
    models (oneDNN; 1.5x faster than NCHW on SSDLite at 768x576), so speed-ups are not
    inflated by a slow baseline."""

    name = "torch-dense"

    def __init__(self, module: nn.Module):
        self.module = copy.deepcopy(module).eval().to(memory_format=torch.channels_last)

    def __call__(self, x):
        with torch.inference_mode():
            return self.module(x.contiguous(memory_format=torch.channels_last))

    def stats(self) -> dict:
        return {"active_fraction": 1.0}


class TorchSparse:
    name = "torch-sparse"

    def __init__(self, module: nn.Module, policy: str, params: dict):
        self.model = SparseModel(module, make_policy(policy, **params))

    def __call__(self, x):
        return self.model(x)

    def stats(self) -> dict:
        return self.model.stats()


class OnnxRuntimeDense:
    """The dense model exported once per input size (cached) and run by ONNX Runtime."""

    name = "onnxruntime"

    def __init__(self, module: nn.Module, example: torch.Tensor, model_name: str, threads: int | None = None):
        import onnxruntime as ort

        path = _export_cached(module, example, model_name)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.shape = tuple(example.shape)

    def __call__(self, x):
        if tuple(x.shape) != self.shape:
            raise PassrtError(f"the ONNX model was exported for input {self.shape}, got {tuple(x.shape)}")
        outs = self.session.run(None, {self.input_name: x.numpy()})
        return tuple(torch.from_numpy(o) for o in outs)

    def stats(self) -> dict:
        return {"active_fraction": 1.0}


def _export_cached(module: nn.Module, example: torch.Tensor, model_name: str) -> Path:
    """Export to ``<cache>/onnx/<model>-<HxW>-<weights hash>.onnx`` unless it is there already."""
    digest = hashlib.sha256()
    for t in module.state_dict().values():
        digest.update(t.detach().cpu().numpy().tobytes()[:4096])
    h, w = example.shape[2:]
    path = assets.cache_dir() / "onnx" / f"{model_name}-{h}x{w}-{digest.hexdigest()[:12]}.onnx"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter is chatty about constant folding
        torch.onnx.export(module.eval(), (example,), buf, dynamo=False, opset_version=17,
                          input_names=["image"], do_constant_folding=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(buf.getvalue())
    tmp.replace(path)
    return path
