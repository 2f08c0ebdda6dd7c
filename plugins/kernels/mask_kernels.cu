// CUDA mask kernels: frame difference against the reference, window propagation, tile
// reduction and dilation. One thread per output element; no atomics, no host sync.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "conv_cell.h"

namespace passrt {
namespace {

constexpr int kThreads = 256;

inline dim3 blocksFor(int64_t n) { return dim3(static_cast<unsigned>((n + kThreads - 1) / kThreads)); }

template <typename T>
__global__ void changeMapKernel(const T* x, T* ref, int32_t batch, int32_t channels, int32_t h, int32_t w,
                                float threshold, int32_t updateRef, float* changed) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;  // pixel over batch * h * w
  if (i >= (int64_t)batch * h * w) return;
  const int64_t n = i / ((int64_t)h * w), pix = i % ((int64_t)h * w);
  float diff = 0.f;
  for (int32_t c = 0; c < channels; ++c) {
    const int64_t k = (n * channels + c) * h * w + pix;
    diff = fmaxf(diff, fabsf(toFloat(x[k]) - toFloat(ref[k])));
  }
  const bool hit = diff > threshold;
  changed[i] = hit ? 1.f : 0.f;
  if (hit && updateRef) {  // the reference moves only where a change was detected
    for (int32_t c = 0; c < channels; ++c) {
      const int64_t k = (n * channels + c) * h * w + pix;
      ref[k] = x[k];
    }
  }
}

__global__ void propagateWindowKernel(WindowParams p, const float* in, float* out) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (int64_t)p.batch * p.out_h * p.out_w) return;
  const int32_t n = i / ((int64_t)p.out_h * p.out_w);
  const int32_t cell = i % ((int64_t)p.out_h * p.out_w);
  out[i] = windowTouchesChange(p, in, n, cell / p.out_w, cell % p.out_w);
}

__global__ void reduceToTilesKernel(const float* changed, int32_t batch, int32_t h, int32_t w, int32_t tile,
                                    float* tiles) {
  const int32_t th = (h + tile - 1) / tile, tw = (w + tile - 1) / tile;
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (int64_t)batch * th * tw) return;
  const int32_t n = i / ((int64_t)th * tw), t = i % ((int64_t)th * tw);
  const int32_t y0 = (t / tw) * tile, x0 = (t % tw) * tile;
  float any = 0.f;
  for (int32_t y = y0; y < min(y0 + tile, h) && any == 0.f; ++y)
    for (int32_t x = x0; x < min(x0 + tile, w); ++x)
      if (changed[((int64_t)n * h + y) * w + x] > 0.5f) { any = 1.f; break; }
  tiles[i] = any;
}

__global__ void dilateTilesKernel(const float* in, int32_t batch, int32_t th, int32_t tw, int32_t radius,
                                  float* out) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= (int64_t)batch * th * tw) return;
  const int32_t n = i / ((int64_t)th * tw), t = i % ((int64_t)th * tw);
  const int32_t ty = t / tw, tx = t % tw;
  float any = 0.f;
  for (int32_t y = max(ty - radius, 0); y <= min(ty + radius, th - 1); ++y)
    for (int32_t x = max(tx - radius, 0); x <= min(tx + radius, tw - 1); ++x)
      if (in[((int64_t)n * th + y) * tw + x] > 0.5f) any = 1.f;
  out[i] = any;
}

}  // namespace

cudaError_t changeMap(DataType dtype, const void* x, void* x_ref, int32_t batch, int32_t channels, int32_t h,
                      int32_t w, float threshold, int32_t update_ref, float* changed, cudaStream_t stream) {
  const dim3 grid = blocksFor((int64_t)batch * h * w);
  if (dtype == DataType::kFloat16) {
    changeMapKernel<__half><<<grid, kThreads, 0, stream>>>(static_cast<const __half*>(x), static_cast<__half*>(x_ref),
                                                           batch, channels, h, w, threshold, update_ref, changed);
  } else {
    changeMapKernel<float><<<grid, kThreads, 0, stream>>>(static_cast<const float*>(x), static_cast<float*>(x_ref),
                                                          batch, channels, h, w, threshold, update_ref, changed);
  }
  return cudaGetLastError();
}

cudaError_t propagateWindow(const WindowParams& p, const float* changed_in, float* changed_out,
                            cudaStream_t stream) {
  propagateWindowKernel<<<blocksFor((int64_t)p.batch * p.out_h * p.out_w), kThreads, 0, stream>>>(
      p, changed_in, changed_out);
  return cudaGetLastError();
}

cudaError_t reduceToTiles(const float* changed, int32_t batch, int32_t h, int32_t w, int32_t tile, float* tiles,
                          cudaStream_t stream) {
  const int64_t n = (int64_t)batch * ((h + tile - 1) / tile) * ((w + tile - 1) / tile);
  reduceToTilesKernel<<<blocksFor(n), kThreads, 0, stream>>>(changed, batch, h, w, tile, tiles);
  return cudaGetLastError();
}

cudaError_t dilateTiles(const float* in, int32_t batch, int32_t tiles_h, int32_t tiles_w, int32_t radius,
                        float* out, cudaStream_t stream) {
  dilateTilesKernel<<<blocksFor((int64_t)batch * tiles_h * tiles_w), kThreads, 0, stream>>>(
      in, batch, tiles_h, tiles_w, radius, out);
  return cudaGetLastError();
}

}  // namespace passrt
