"""PASS: learnable patch-skip gates (the gate, where gates sit, the policy that runs them, and
their two training stages).

    from passrt.gates import PassGates
    engine = passrt.sparsify(model, policy=PassGates.load("gates.pt"))
"""

from passrt.gates.gate import GateConfig, PassGate
from passrt.gates.gateset import GateSet, load
from passrt.gates.policy import PassGates

__all__ = ["GateConfig", "GateSet", "PassGate", "PassGates", "load"]
