"""The sparse execution engine: trace a model, plan its steps, run them frame by frame."""

from passrt.engine.policies import POLICIES, Dense, Exact, LayerWise, Policy, RegionDrop, make_policy
from passrt.engine.streaming import SparseModel, sparsify

__all__ = ["POLICIES", "Dense", "Exact", "LayerWise", "Policy", "RegionDrop", "SparseModel",
           "make_policy", "sparsify"]
