"""The executors: run a plan under a policy frame by frame (reference: eager PyTorch on cached
feature maps; op: the stateless program with passrt's compiled op), behind :class:`SparseModel`."""

from passrt.engine.sparse_model import SparseModel, sparsify

__all__ = ["SparseModel", "sparsify"]
