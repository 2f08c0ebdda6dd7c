"""Run an exported graph frame by frame without TensorRT: ``onnx.reference`` + the node's reference.

This is how the export is tested on a machine without TensorRT (as Polygraphy's ``pluginref``
backend does): standard ops run in ONNX's reference evaluator, each ``PassSparseConv2d`` node in
:func:`passrt.engine.node.pass_sparse_conv2d`, and the state is fed back as a TensorRT
application would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from passrt.errors import PassrtError
from passrt import contract
from passrt.engine.node import NodeAttributes, pass_sparse_conv2d


def _node_op():
    from onnx.reference.op_run import OpRun

    class PassSparseConv2d(OpRun):
        op_domain = contract.DOMAIN

        def _run(self, x, tile_mask, cache_in, weight, bias, residual=None, kernel_shape=None, strides=None,
                 dilations=None, pads=None, group=None, tile=None, activation=None, activation_alpha=None,
                 post_activation=None, plugin_version=None, plugin_namespace=None):
            if plugin_version != contract.PLUGIN_VERSION or plugin_namespace != contract.PLUGIN_NAMESPACE:
                raise ValueError(f"unexpected plugin {plugin_namespace}::{contract.PLUGIN_NAME} v{plugin_version}")
            attrs = NodeAttributes(tuple(kernel_shape), tuple(strides), tuple(dilations), tuple(pads), int(group),
                                   int(tile), int(activation), float(activation_alpha), int(post_activation))
            t = lambda a: torch.from_numpy(np.require(a, requirements=["C", "W"])) if a is not None else None  # noqa: E731
            with torch.no_grad():
                y = pass_sparse_conv2d(t(x), t(tile_mask), t(cache_in), t(weight), t(bias), t(residual), attrs)
            return (y.numpy(),)

    return PassSparseConv2d


class ExportedStream:
    """``stream(image) -> list of model outputs`` for an exported dense or sparse graph."""

    def __init__(self, path: Path | str):
        import onnx
        from onnx.reference import ReferenceEvaluator

        path = Path(path)
        if not path.is_file():
            raise PassrtError(f"{path}: no such ONNX file")
        self.model = onnx.load(str(path))
        self.session = ReferenceEvaluator(self.model, new_ops=[_node_op()])
        shape = lambda v: tuple(d.dim_value for d in v.type.tensor_type.shape.dim)  # noqa: E731
        inputs = {i.name: shape(i) for i in self.model.graph.input}
        outputs = {o.name: shape(o) for o in self.model.graph.output}
        try:
            io = contract.GraphIO(inputs, outputs, list(outputs))
        except ValueError as e:
            raise PassrtError(f"{path}: {e}") from None
        self.outputs = list(outputs)
        self.loop = contract.StateLoop(io, {a: np.zeros(inputs[a], np.float32) for a, _ in io.states})
        self.sparse = io.sparse

    @property
    def last_active_fraction(self) -> float:
        return self.loop.active_fraction

    def reset(self) -> None:
        self.loop.reset(np.zeros_like)

    def __call__(self, image: torch.Tensor, refresh: bool = False) -> list[torch.Tensor]:
        self.loop.refresh = self.loop.refresh or refresh
        feeds = self.loop.feeds(image.detach().cpu().numpy().astype(np.float32),
                                lambda v: np.array([v], np.float32))
        results = dict(zip(self.outputs, self.session.run(None, feeds)))
        outputs, _ = self.loop.advance(results)
        return [torch.from_numpy(v) for v in outputs]
