"""Tile kernels: the pure-PyTorch reference implementation of passrt's sparse ops.

Every op reads a full dense input and rewrites only the active tiles of a persistent dense
output (ARCHITECTURE.md, decision 1). Activations are stored as :class:`FeatureMap` rows
(NHWC plus three special rows), which turns "gather the input window of every active tile"
into one ``index_select`` and "write the active tiles" into one ``index_copy_``.
"""

from passrt.kernels.storage import FeatureMap
from passrt.kernels.reference import sparse_conv2d

__all__ = ["FeatureMap", "sparse_conv2d"]
