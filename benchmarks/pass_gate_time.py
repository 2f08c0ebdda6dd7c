"""Time of PASS's common gate per frame against RegionDrop's rule, side by side in one process.

    PYTHONPATH=. python benchmarks/pass_gate_time.py [--size 576x768] [--threads 1]

Prints the per-pixel pass (tensor ops, and passrt's C++ ``frame_block_features``), the gate's
network on the block grid, and RegionDrop's block count (``frame_block_counts``), in ms a frame.
The two sides run alternately in one process, so a loaded machine slows both alike.
"""

import argparse
import time

import torch

from passrt.kernels import extension, native
from passrt.options import parse_size
from passrt.policies.common_gate import CommonGate


def per_call(fn, n=20) -> float:
    fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="576x768", type=parse_size)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if not extension.load():
        raise SystemExit("passrt's C++ op is not built (it builds on first use; see the README)")
    torch.set_num_threads(args.threads)
    gate = CommonGate().eval()
    x = torch.rand(1, 3, *args.size, generator=torch.Generator().manual_seed(0))
    ref = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    tau = torch.tensor([0.04])
    with torch.no_grad():
        feats = gate.features(x, ref, tau)
        for _ in range(2):
            print(f"gate per-pixel pass: tensor ops {per_call(lambda: gate.features(x, ref, tau)):.2f} ms, "
                  f"native {per_call(lambda: gate.features(x, ref, tau, native=True)):.2f} ms; "
                  f"gate network {per_call(lambda: gate(feats)):.2f} ms; regiondrop's block count (native) "
                  f"{per_call(lambda: native.block_change_counts(x, ref, 0.04, 16)):.2f} ms")


if __name__ == "__main__":
    main()
