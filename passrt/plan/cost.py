"""A roofline cost model of a plan: what a dense engine and passrt's sparse executor should cost
on a device, before any of it runs there.

No machine this project was developed on had a GPU, so the GPU design (docs/TENSORRT.md,
passrt/csrc/kernels/README.md) was chosen with this model, and every GPU figure it gives is a
PREDICTION. Per layer it counts MACs and the bytes moved to and from DRAM for

- ``dense``: a dense engine of the kind TensorRT builds (one fused kernel per conv with bias,
  activation and residual; a depthwise conv and the 1x1 after it are two kernels, so the
  intermediate goes through memory), and
- ``sparse``: passrt's executor at a tile mask (a fraction of active tiles per layer): input
  windows of the active tiles incl. their halo, active output/residual cells, the layer's weights
  once, the fused depthwise->1x1 intermediate kept on chip; plus optional design costs (a copy of
  every cache per frame, fp32 SIMT instead of fp16 tensor cores, blocks launched for inactive tiles)
  so the designs can be compared,

and turns them into time with the device's peaks and efficiency factors:
``time = max(MACs / (peak MAC/s * eff_mac), bytes / (DRAM B/s * eff_bw)) + launches * launch_s``.

Peaks are the vendors' published figures (``Device.source``); efficiencies are assumptions written
down in :class:`Efficiency`, except where ``benchmarks/cost_model.py`` calibrates them on a CPU it
can measure. The model has no notion of caches other than "weights come from L2 after their first
read", of occupancy, or of TensorRT's tactic choice: it ranks designs and gives orders of magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from passrt.plan.steps import ConvStep, InputStep, SpatialStep, Step


@dataclass(frozen=True)
class Device:
    name: str
    arch: str
    tc_fp16_macs: float  # dense fp16 tensor-core MAC/s (0: none)
    simt_fp16_macs: float  # fp16 on CUDA cores (half2 where the chip has it) MAC/s
    simt_fp32_macs: float  # fp32 FMA/s
    dram_bw: float  # bytes/s
    sms: int
    launch_s: float  # one kernel boundary inside a CUDA graph / TensorRT engine
    source: str


# Published peaks. MAC/s = FLOPS / 2. Jetson clocks are the maximum GPU clock of each module.
DEVICES = {
    "nano": Device("Jetson Nano", "sm_53", 0.0, 236e9, 118e9, 25.6e9, 1, 4e-6,
                   "Jetson Nano module datasheet: 128 Maxwell cores @ 921.6 MHz, 472 GFLOPS fp16, "
                   "LPDDR4 25.6 GB/s, no tensor cores"),
    "xavier": Device("Jetson AGX Xavier", "sm_72", 5.65e12, 1.41e12, 0.705e12, 136.5e9, 8, 3e-6,
                     "AGX Xavier datasheet: 512 Volta cores + 64 tensor cores @ 1377 MHz, 1.41 TFLOPS fp32, "
                     "11.3 TFLOPS fp16 tensor (22.6 INT8 TOPS / 2), LPDDR4x 136.5 GB/s"),
    "orin": Device("Jetson AGX Orin 64GB", "sm_87", 21.3e12, 5.3e12, 2.65e12, 204.8e9, 16, 3e-6,
                   "AGX Orin datasheet: 2048 Ampere cores + 64 tensor cores @ 1.3 GHz, 5.3 TFLOPS fp32, "
                   "170 sparse INT8 TOPS -> 42.5 dense fp16 TFLOPS, LPDDR5 204.8 GB/s"),
    "h200": Device("H200 SXM", "sm_90", 494.5e12, 67e12, 33.5e12, 4.8e12, 132, 2e-6,
                   "H200 SXM product brief: 989 dense fp16 tensor TFLOPS, 67 TFLOPS fp32, HBM3e 4.8 TB/s"),
}


@dataclass(frozen=True)
class Efficiency:
    """Fractions of peak reached. ASSUMED unless a benchmark calibrates them; each says why."""

    # TensorRT on batch-1 MobileNet-style convs: small GEMMs (K = 16..960) never fill the tensor
    # cores; public Jetson figures for SSD-MobileNet put whole networks at 10-30 % of peak.
    dense_mac: float = 0.30
    dense_bw: float = 0.70  # streaming NHWC/NC8HW8 reads and writes of whole maps
    # passrt's tile kernels: gathered tile GEMMs (M = 64 cells from the compacted list, any tile
    # size), the same tensor-core fragments, less regular memory access (window halos, row gathers).
    sparse_mac: float = 0.20
    sparse_bw: float = 0.45
    simt_fp32_mac: float = 0.30  # the reviewed fp32 SIMT kernels (register-tiled GEMM, no tensor cores)


@dataclass(frozen=True)
class Design:
    """What a sparse executor does beyond the useful work; the defaults are issue 12's design."""

    dtype_bytes: int = 2  # fp16 storage
    tensor_cores: bool = True  # fp16 MMA for convs with a channel reduction (not depthwise)
    state_copy: bool = False  # explicit cache_in -> cache_out copy of every layer's whole cache per frame
    state_copy_bytes: int = 4  # the copied caches' element size (the reviewed plugin kept FLOAT state)
    grid_all_tiles: bool = False  # blocks launched for every tile (inactive ones exit), not for active ones
    empty_block_s: float = 1e-6  # what one launched-and-exiting block costs per SM slot (launch + smem reserve)
    per_cell_gemv: bool = False  # 1-cell tiles run one GEMV per cell: weights re-read (from L2) per cell
    compaction_launches: int = 1  # device-side tile lists: one launch per distinct mask per frame


OLD_DESIGN = Design(dtype_bytes=4, tensor_cores=False, state_copy=True, grid_all_tiles=True, per_cell_gemv=True)
NEW_DESIGN = Design()


@dataclass
class LayerCost:
    label: str
    kind: str
    tile: int
    tiles: int
    macs: float  # dense MACs of the layer
    in_elems: float  # input elements a dense conv reads (bytes = elements x dtype size)
    out_elems: float  # output elements
    extra_elems: float  # residual/other per-cell operands, elements
    mid_elems: float  # a fused depthwise->1x1 intermediate (dense engines write and read it)
    weight_elems: float
    halo: float  # input read per active output cell relative to a dense read (>= 1 for k > s)
    reduction: bool  # has a channel reduction (tensor cores apply)


def layer_costs(steps: Iterable[Step]) -> list[LayerCost]:
    """The conv and other spatial steps of a plan with their dense sizes (DenseSteps are left out:
    heads' reshapes and the like cost next to nothing and run dense in every design)."""
    steps = list(steps)
    shapes = {s.name: s.shape for s in steps if isinstance(s, (InputStep, SpatialStep))}
    out = []
    for s in steps:
        if not isinstance(s, SpatialStep):
            continue
        c, h, w = s.shape
        cells = h * w
        refs = s.input_refs()
        src = shapes.get(refs[0][0]) if refs else None
        in_elems = (src[0] * src[1] * src[2]) if src else 0
        extra = sum(shapes[n][0] * cells for n, bc in refs[1:] if not bc and n in shapes)
        if isinstance(s, ConvStep):
            kh, kw = s.win.kernel
            sh, sw = s.win.stride
            ekh, ekw = (kh - 1) * s.win.dilation[0] + 1, (kw - 1) * s.win.dilation[1] + 1
            t = s.tile
            halo = (((t - 1) * sh + ekh) * ((t - 1) * sw + ekw)) / float(t * sh * t * sw)
            weights = s.weight.numel() + (s.follow.weight.numel() if s.follow is not None else 0)
            mid = s.weight.shape[0] * cells if s.follow is not None else 0
            reduction = s.weight.shape[1] > 1 or s.follow is not None
        else:
            halo, weights, mid, reduction = 1.0, 0, 0, False
        out.append(LayerCost(s.label, s.kind, s.tile, s.grid[0] * s.grid[1], float(s.macs_per_cell * cells),
                             float(in_elems), float(c * cells), float(extra), float(mid), float(weights), halo,
                             reduction))
    return out


def _mac_rate(dev: Device, eff: Efficiency, layer: LayerCost, tensor_cores: bool, dense: bool) -> float:
    mac_eff = eff.dense_mac if dense else eff.sparse_mac
    if not tensor_cores:
        return dev.simt_fp32_macs * eff.simt_fp32_mac
    if layer.reduction and dev.tc_fp16_macs > 0:
        rate = dev.tc_fp16_macs
    else:  # depthwise convs (and Maxwell): fp16 on CUDA cores
        rate = dev.simt_fp16_macs
    return rate * mac_eff


def dense_time(layer: LayerCost, dev: Device, eff: Efficiency, dtype_bytes: int = 2) -> float:
    """One layer in a dense fp16 engine of TensorRT's kind."""
    elems = layer.in_elems + layer.out_elems + layer.extra_elems + 2 * layer.mid_elems + layer.weight_elems
    launches = 2 if layer.mid_elems else 1
    return max(layer.macs / _mac_rate(dev, eff, layer, True, True), elems * dtype_bytes / (dev.dram_bw * eff.dense_bw)) \
        + launches * dev.launch_s


def sparse_time(layer: LayerCost, active: float, dev: Device, eff: Efficiency, design: Design = NEW_DESIGN) -> float:
    """One layer on passrt's executor with a fraction ``active`` of its tiles recomputed."""
    b = design.dtype_bytes
    elems = min(1.0, active * layer.halo) * layer.in_elems + active * (layer.out_elems + layer.extra_elems)
    if active > 0:
        elems += layer.weight_elems
    mac_time = active * layer.macs / _mac_rate(dev, eff, layer, design.tensor_cores, False)
    mem_bytes = elems * b
    l2_time = 0.0
    if design.per_cell_gemv and layer.tile == 1 and layer.reduction:  # weights re-read per active cell, from L2
        l2_time = active * layer.tiles * layer.weight_elems * b / (2 * dev.dram_bw)  # assumed L2 = 2x DRAM
    t = max(mac_time, mem_bytes / (dev.dram_bw * eff.sparse_bw), l2_time) + _state_copy(layer, dev, eff, design)
    if design.grid_all_tiles:  # one block per tile whatever the mask; two block slots per SM assumed
        t += (1 - active) * layer.tiles / (dev.sms * 2) * design.empty_block_s
    return t + dev.launch_s


def _state_copy(layer: LayerCost, dev: Device, eff: Efficiency, design: Design) -> float:
    """cache_in -> cache_out, read + write, every frame whatever the mask (explicit state I/O)."""
    if not design.state_copy:
        return 0.0
    return 2 * layer.out_elems * design.state_copy_bytes / (dev.dram_bw * eff.dense_bw)


def mask_time(frame_values: int, dev: Device, eff: Efficiency = Efficiency(), passes: int = 6, launches: int = 12,
              value_bytes: int = 4) -> float:
    """The per-frame mask rule on the input frame (RegionDrop: frame differences, block counts, the noise
    statistic, the reference update): ``passes`` streaming passes over ``frame_values`` values and
    ``launches`` small kernels. A dense engine pays none of it. Defaults: what regiondrop's traceable rule
    runs per frame (passrt/policies/regiondrop.py), counted by hand, fp32 frames."""
    return passes * frame_values * value_bytes / (dev.dram_bw * eff.dense_bw) + launches * dev.launch_s


def predict(layers: list[LayerCost], active: Mapping[str, float], dev: Device, eff: Efficiency = Efficiency(),
            design: Design = NEW_DESIGN, masks_per_frame: int = 1, crossover: bool = True,
            extra_s: float = 0.0) -> dict:
    """Frame time of the dense engine and of the sparse executor at per-layer active fractions
    (label -> fraction of tiles; a missing label counts as fully active). With ``crossover`` a layer
    whose sparse time exceeds its dense time runs dense (the per-layer crossover of DESIGN.md); the
    reviewed plugin had none (``crossover=False``). ``extra_s``: per-frame sparse-only work such as
    :func:`mask_time`."""
    dense = sparse = 0.0
    rows = []
    for layer in layers:
        a = float(active.get(layer.label, 1.0))
        td = dense_time(layer, dev, eff)
        ts = sparse_time(layer, a, dev, eff, design)
        fallback = td + _state_copy(layer, dev, eff, design)
        use_dense = crossover and ts > fallback
        dense += td
        sparse += fallback if use_dense else ts
        rows.append({"label": layer.label, "kind": layer.kind, "tile": layer.tile, "active": a, "dense_s": td,
                     "sparse_s": ts, "runs": "dense" if use_dense else "sparse"})
    sparse += masks_per_frame * design.compaction_launches * dev.launch_s + extra_s
    return {"device": dev.name, "dense_s": dense, "sparse_s": sparse, "speedup": dense / sparse if sparse else None,
            "layers": rows}


def crossover(layer: LayerCost, dev: Device, eff: Efficiency = Efficiency(), design: Design = NEW_DESIGN) -> float:
    """The active fraction above which this layer is cheaper dense (1.0: sparse is never slower)."""
    td = dense_time(layer, dev, eff)
    lo, hi = 0.0, 1.0
    if sparse_time(layer, 1.0, dev, eff, design) <= td:
        return 1.0
    if sparse_time(layer, 0.0, dev, eff, design) > td:
        return 0.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sparse_time(layer, mid, dev, eff, design) <= td else (lo, mid)
    return lo
