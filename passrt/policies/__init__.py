"""Mask policies: which tiles of which layer to recompute on each frame. One file per policy,
each holding its one rule (see :mod:`passrt.policies.base`); :mod:`passrt.policies.spec` names them.

Names are imported on first use: the CLI reads option dataclasses of this package without torch.
"""

from importlib import import_module

_LAZY = {
    "FrameContext": "base", "MaskSource": "base", "Policy": "base", "Dense": "dense", "Exact": "exact",
    "LayerWise": "layerwise", "PassGates": "pass_gates", "RegionDrop": "regiondrop",
    "NAMES": "spec", "PolicySpec": "spec", "make_policy": "spec", "registry": "spec",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f"passrt.policies.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'passrt.policies' has no attribute '{name}'")
