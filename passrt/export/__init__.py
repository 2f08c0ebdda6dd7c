"""ONNX export of dense and sparse models, and a reference runner for the exported graphs.

- :mod:`contract`: the names everything agrees on (plugin, attributes, graph I/O);
- :mod:`node_ref`: what one ``PassSparseConv2d`` node computes, in PyTorch, and its ONNX symbolic;
- :mod:`program`: the engine's plan as one stateless function (image, refresh, state) -> (outputs, state);
- :mod:`onnx_export`: ``export_model`` (what ``passrt export`` runs);
- :mod:`runner`: runs an exported graph frame by frame without TensorRT (``onnx.reference``).
"""

from passrt.export.onnx_export import export_model
from passrt.export.runner import ExportedStream

__all__ = ["ExportedStream", "export_model"]
