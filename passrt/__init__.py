"""passrt: temporally sparse inference for video CNNs.

    import passrt
    engine = passrt.sparsify(model, policy="regiondrop", threshold=0.08)
    for frame in frames:            # (1, C, H, W) tensors
        outputs = engine(frame)     # what model(frame) returns
    print(engine.stats())

Names are imported on first use, so ``import passrt`` (and ``passrt --help``) needs no torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {
    "sparsify": "passrt.engine", "SparseModel": "passrt.engine",
    "Policy": "passrt.policies", "PolicySpec": "passrt.policies", "make_policy": "passrt.policies",
    "Dense": "passrt.policies", "Exact": "passrt.policies", "RegionDrop": "passrt.policies",
    "LayerWise": "passrt.policies", "PassGates": "passrt.policies",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'passrt' has no attribute '{name}'")


def __dir__():
    return sorted(list(globals()) + __all__)
