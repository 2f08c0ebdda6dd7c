// CUDA sparse convolution: a fixed grid over all tiles; blocks of inactive tiles return at once.
//
// Grid: x = tile index (tilesH * tilesW), y = image, z = block of kCoutPerBlock output
// channels. Threads stride over (cell of the tile) x (channel of the block). This is a
// direct convolution without shared-memory reuse: correct for every geometry and simple
// to verify (its arithmetic is convCell, shared with the CPU twin). It is NOT tuned: an
// implicit GEMM over the tile's cells with tensor cores is the planned fast path for wide
// 1x1 layers (see README.md); no GPU has been available to measure either.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "conv_cell.h"

namespace passrt {
namespace {

constexpr int kCoutPerBlock = 32;
constexpr int kThreads = 128;

template <typename T>
__global__ void sparseConv2dKernel(SparseConvParams p, const T* input, const T* weight, const T* bias,
                                   const T* residual, const float* tileMask, T* output) {
  const int32_t tilesW = p.tilesW();
  const int32_t tileIdx = blockIdx.x;
  const int32_t n = blockIdx.y;
  if (tileMask[(int64_t)n * p.tilesH() * tilesW + tileIdx] <= 0.5f) return;  // inactive: keep the cache
  const int32_t ty = tileIdx / tilesW, tx = tileIdx % tilesW;
  const int32_t coBase = blockIdx.z * kCoutPerBlock;
  const int32_t cells = p.tile * p.tile;
  for (int32_t i = threadIdx.x; i < cells * kCoutPerBlock; i += blockDim.x) {
    const int32_t co = coBase + i / cells;
    const int32_t oy = ty * p.tile + (i % cells) / p.tile;
    const int32_t ox = tx * p.tile + (i % cells) % p.tile;
    if (co >= p.out_channels || oy >= p.out_h || ox >= p.out_w) continue;  // overhanging edge tile
    const float v = convCell(p, input, weight, bias, residual, n, co, oy, ox);
    output[(((int64_t)n * p.out_channels + co) * p.out_h + oy) * p.out_w + ox] = fromFloat<T>(v);
  }
}

template <typename T>
cudaError_t launch(const SparseConvParams& p, const void* input, const void* weight, const void* bias,
                   const void* residual, const float* tileMask, void* output, cudaStream_t stream) {
  const dim3 grid(p.tilesH() * p.tilesW(), p.batch, (p.out_channels + kCoutPerBlock - 1) / kCoutPerBlock);
  sparseConv2dKernel<T><<<grid, kThreads, 0, stream>>>(
      p, static_cast<const T*>(input), static_cast<const T*>(weight), static_cast<const T*>(bias),
      static_cast<const T*>(residual), tileMask, static_cast<T*>(output));
  return cudaGetLastError();
}

}  // namespace

cudaError_t sparseConv2d(const SparseConvParams& p, DataType dtype, const void* input, const void* weight,
                         const void* bias, const void* residual, const float* tile_mask, void* output,
                         cudaStream_t stream) {
  if (p.tile <= 0 || p.groups <= 0 || p.in_channels % p.groups || p.out_channels % p.groups) {
    return cudaErrorInvalidValue;
  }
  if (dtype == DataType::kFloat16) {
    return launch<__half>(p, input, weight, bias, residual, tile_mask, output, stream);
  }
  return launch<float>(p, input, weight, bias, residual, tile_mask, output, stream);
}

}  // namespace passrt
