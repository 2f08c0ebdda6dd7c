"""passrt: temporally sparse inference for video CNNs.

    import passrt
    engine = passrt.sparsify(model, policy="regiondrop", threshold=0.08)
    for frame in frames:            # (1, C, H, W) tensors
        outputs = engine(frame)     # what model(frame) returns
    print(engine.stats())
"""

from passrt.engine import Dense, Exact, LayerWise, Policy, RegionDrop, SparseModel, make_policy, sparsify
from passrt.gates import PassGates

__version__ = "0.1.0"
__all__ = ["Dense", "Exact", "LayerWise", "PassGates", "Policy", "RegionDrop", "SparseModel", "make_policy",
           "sparsify"]
