"""ONNX export of dense and sparse models, and a reference runner for the exported graphs.

The graph is the engine's :class:`~passrt.engine.program.SparseProgram` traced with each
``PassSparseConv2d`` node kept whole (:mod:`passrt.engine.node`); the names everything agrees
on are in :mod:`passrt.contract`.

- :mod:`onnx_export`: ``export_model`` (what ``passrt export`` runs);
- :mod:`runner`: runs an exported graph frame by frame without TensorRT (``onnx.reference``).
"""

from passrt.export.onnx_export import export_model
from passrt.export.runner import ExportedStream

__all__ = ["ExportedStream", "export_model"]
