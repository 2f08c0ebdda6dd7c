// CUDA mask kernels (passrt_kernels.h): frame difference against the reference, window
// propagation, OR-reduction to tiles and tile dilation.
//
// All four are small and memory-bound next to the convolutions, so they stay simple: one
// thread per output element over a fixed grid, no shared memory, no atomics, no host sync.
// In changeMap consecutive threads take consecutive pixels, so the loop over channels reads
// coalesced rows of each channel plane.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>

#include "conv_cell.h"

namespace passrt {
namespace {

constexpr int kThreads = 256;

// Blocks for `n` threads; 0 when the grid would not fit (checked by the callers).
inline unsigned blocksFor(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return blocks <= INT_MAX ? static_cast<unsigned>(blocks) : 0u;
}

template <typename T>
__global__ void changeMapKernel(const T* __restrict__ x,  // [N, C, H, W]
                                T* __restrict__ ref,      // [N, C, H, W], updated where changed
                                int32_t batch, int32_t channels, int32_t h, int32_t w, float threshold,
                                int32_t updateRef,
                                float* __restrict__ changed) {  // [N, H, W]
  const int64_t hw = (int64_t)h * w;
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;  // pixel of the batch
  if (i >= batch * hw) return;
  const int64_t n = i / hw, pix = i % hw;
  float diff = 0.f;
  for (int32_t c = 0; c < channels; ++c) {
    const int64_t k = (n * channels + c) * hw + pix;
    diff = fmaxf(diff, fabsf(toFloat(x[k]) - toFloat(ref[k])));
  }
  const bool hit = diff > threshold;
  changed[i] = hit ? 1.f : 0.f;
  if (hit && updateRef) {  // the reference moves only where a change was detected
    for (int32_t c = 0; c < channels; ++c) {
      const int64_t k = (n * channels + c) * hw + pix;
      ref[k] = x[k];
    }
  }
}

__global__ void propagateWindowKernel(WindowParams p,
                                      const float* __restrict__ in,  // [N, in_h, in_w]
                                      float* __restrict__ out) {     // [N, out_h, out_w]
  const int64_t cells = (int64_t)p.out_h * p.out_w;
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= p.batch * cells) return;
  const int32_t n = (int32_t)(i / cells), cell = (int32_t)(i % cells);
  out[i] = windowTouchesChange(p, in, n, cell / p.out_w, cell % p.out_w);
}

__global__ void reduceToTilesKernel(const float* __restrict__ changed,  // [N, H, W]
                                    int32_t batch, int32_t h, int32_t w, int32_t tile,
                                    float* __restrict__ tiles) {  // [N, ceil(H / tile), ceil(W / tile)]
  const int32_t th = (h + tile - 1) / tile, tw = (w + tile - 1) / tile;
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (int64_t)batch * th * tw) return;
  const int64_t n = i / ((int64_t)th * tw);
  const int32_t t = (int32_t)(i % ((int64_t)th * tw));
  const int32_t y0 = (t / tw) * tile, x0 = (t % tw) * tile;
  const int32_t y1 = min(y0 + tile, h), x1 = min(x0 + tile, w);  // tiles overhang the edge
  float any = 0.f;
  for (int32_t y = y0; y < y1 && any == 0.f; ++y)
    for (int32_t x = x0; x < x1; ++x)
      if (changed[(n * h + y) * w + x] > 0.5f) {
        any = 1.f;
        break;
      }
  tiles[i] = any;
}

__global__ void dilateTilesKernel(const float* __restrict__ in,  // [N, tiles_h, tiles_w]
                                  int32_t batch, int32_t th, int32_t tw, int32_t radius,
                                  float* __restrict__ out) {  // [N, tiles_h, tiles_w]
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (int64_t)batch * th * tw) return;
  const int64_t n = i / ((int64_t)th * tw);
  const int32_t t = (int32_t)(i % ((int64_t)th * tw)), ty = t / tw, tx = t % tw;
  float any = 0.f;
  for (int32_t y = max(ty - radius, 0); y <= min(ty + radius, th - 1) && any == 0.f; ++y)
    for (int32_t x = max(tx - radius, 0); x <= min(tx + radius, tw - 1); ++x)
      if (in[(n * th + y) * tw + x] > 0.5f) {
        any = 1.f;
        break;
      }
  out[i] = any;
}

}  // namespace

cudaError_t changeMap(DataType dtype, const void* x, void* x_ref, int32_t batch, int32_t channels, int32_t h,
                      int32_t w, float threshold, int32_t update_ref, float* changed, cudaStream_t stream) {
  if (batch < 0 || channels < 0 || h < 0 || w < 0) return cudaErrorInvalidValue;
  const int64_t n = (int64_t)batch * h * w;
  if (n == 0) return cudaSuccess;  // a 0-block grid is a launch error
  const unsigned blocks = blocksFor(n);
  if (!x || !x_ref || !changed || blocks == 0) return cudaErrorInvalidValue;
  if (dtype == DataType::kFloat16) {
    changeMapKernel<__half><<<blocks, kThreads, 0, stream>>>(static_cast<const __half*>(x),
                                                             static_cast<__half*>(x_ref), batch, channels, h, w,
                                                             threshold, update_ref, changed);
  } else {
    changeMapKernel<float><<<blocks, kThreads, 0, stream>>>(static_cast<const float*>(x),
                                                            static_cast<float*>(x_ref), batch, channels, h, w,
                                                            threshold, update_ref, changed);
  }
  return cudaGetLastError();
}

cudaError_t propagateWindow(const WindowParams& p, const float* changed_in, float* changed_out,
                            cudaStream_t stream) {
  if (p.batch < 0 || p.in_h < 0 || p.in_w < 0 || p.out_h < 0 || p.out_w < 0 || p.kernel_h <= 0 ||
      p.kernel_w <= 0 || p.stride_h <= 0 || p.stride_w <= 0 || p.dilation_h <= 0 || p.dilation_w <= 0) {
    return cudaErrorInvalidValue;
  }
  const int64_t n = (int64_t)p.batch * p.out_h * p.out_w;
  if (n == 0) return cudaSuccess;
  const unsigned blocks = blocksFor(n);
  if (!changed_in || !changed_out || blocks == 0) return cudaErrorInvalidValue;
  propagateWindowKernel<<<blocks, kThreads, 0, stream>>>(p, changed_in, changed_out);
  return cudaGetLastError();
}

cudaError_t reduceToTiles(const float* changed, int32_t batch, int32_t h, int32_t w, int32_t tile, float* tiles,
                          cudaStream_t stream) {
  if (batch < 0 || h < 0 || w < 0 || tile <= 0) return cudaErrorInvalidValue;
  const int64_t n = (int64_t)batch * ((h + tile - 1) / tile) * ((w + tile - 1) / tile);
  if (n == 0) return cudaSuccess;
  const unsigned blocks = blocksFor(n);
  if (!changed || !tiles || blocks == 0) return cudaErrorInvalidValue;
  reduceToTilesKernel<<<blocks, kThreads, 0, stream>>>(changed, batch, h, w, tile, tiles);
  return cudaGetLastError();
}

cudaError_t dilateTiles(const float* in, int32_t batch, int32_t tiles_h, int32_t tiles_w, int32_t radius,
                        float* out, cudaStream_t stream) {
  if (batch < 0 || tiles_h < 0 || tiles_w < 0 || radius < 0) return cudaErrorInvalidValue;
  const int64_t n = (int64_t)batch * tiles_h * tiles_w;
  if (n == 0) return cudaSuccess;
  const unsigned blocks = blocksFor(n);
  if (!in || !out || blocks == 0) return cudaErrorInvalidValue;
  radius = std::min(radius, std::max(tiles_h, tiles_w));  // wider reaches nothing more; keeps ty + radius in range
  dilateTilesKernel<<<blocks, kThreads, 0, stream>>>(in, batch, tiles_h, tiles_w, radius, out);
  return cudaGetLastError();
}

}  // namespace passrt
