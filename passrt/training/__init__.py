"""PASS gate training: stage 1 (:mod:`train`, self-supervised triplets built by :mod:`triplet`
from unlabeled clips read by :mod:`data`) and stage 2 (:mod:`finetune`). The gates themselves
and the policy that runs them are in :mod:`passrt.policies`.

    passrt train-gates --clips vtest@200: --out gates.pt
    engine = passrt.sparsify(model, policy=passrt.PassGates.load("gates.pt"))
"""
