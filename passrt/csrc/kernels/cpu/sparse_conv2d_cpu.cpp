// CPU twin of sparseConv2d (passrt_kernels.h), float32: the PyTorch op's CPU kernel and the
// reference the CUDA tests compare with.
//
// Written for clarity, not speed: per active tile, every output cell is convCell (conv_cell.h),
// the same per-cell arithmetic as the CUDA fallback kernel. Tiles are independent, so OpenMP
// (when the build enables it) splits them across threads. For a fast CPU path passrt uses the
// pure-PyTorch tile kernels (passrt/kernels/reference.py), which run one GEMM per layer.
#include <algorithm>
#include <cstdint>

#include "../conv_cell.h"
#include "../passrt_kernels.h"

namespace passrt {

void sparseConv2dCpu(const SparseConvParams& p, const float* input, const float* weight, const float* bias,
                     const float* residual, const float* tile_mask, float* output) {
  // Callers validate (the PyTorch op's TORCH_CHECKs); bad geometry must not turn into a crash here.
  if (checkSparseConv2d(p) != nullptr) return;
  const int32_t tilesH = p.tilesH(), tilesW = p.tilesW();
  const int64_t tiles = (int64_t)p.batch * tilesH * tilesW;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic)
#endif
  for (int64_t i = 0; i < tiles; ++i) {  // i = (n, tile row, tile column)
    if (tile_mask[i] <= 0.5f) continue;  // inactive: the output keeps its cached values
    const int32_t n = (int32_t)(i / ((int64_t)tilesH * tilesW));
    const int32_t t = (int32_t)(i % ((int64_t)tilesH * tilesW));
    const int32_t y0 = (t / tilesW) * p.tile, x0 = (t % tilesW) * p.tile;
    const int32_t y1 = std::min(y0 + p.tile, p.out_h), x1 = std::min(x0 + p.tile, p.out_w);  // edge tiles overhang
    for (int32_t co = 0; co < p.out_channels; ++co)
      for (int32_t oy = y0; oy < y1; ++oy)
        for (int32_t ox = x0; ox < x1; ++ox)
          output[(((int64_t)n * p.out_channels + co) * p.out_h + oy) * p.out_w + ox] =
              convCell(p, input, weight, bias, residual, n, co, oy, ox);
  }
}

}  // namespace passrt
