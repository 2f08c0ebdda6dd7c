// Per-cell arithmetic shared by the CUDA kernels and their CPU twins.
//
// Keeping one definition of "the value of output cell (n, co, oy, ox)" means the CPU twin,
// which is tested against the PyTorch reference on any machine, checks the same arithmetic
// the GPU runs; the CUDA files only add the launch geometry and the early exit.
#pragma once

#include <cmath>
#include <cstdint>

#include "passrt_kernels.h"

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define PASSRT_HD __host__ __device__ __forceinline__
#else
#define PASSRT_HD inline
#endif

namespace passrt {

template <typename T>
PASSRT_HD float toFloat(T v) {
  return static_cast<float>(v);
}

template <typename T>
PASSRT_HD T fromFloat(float v) {
  return static_cast<T>(v);
}

#ifdef __CUDACC__
template <>
PASSRT_HD float toFloat<__half>(__half v) {
  return __half2float(v);
}
template <>
PASSRT_HD __half fromFloat<__half>(float v) {
  return __float2half(v);
}
#endif

PASSRT_HD float activate(Activation act, float alpha, float v) {
  switch (act) {
    case Activation::kRelu:
      return v > 0.f ? v : 0.f;
    case Activation::kRelu6:
      return v < 0.f ? 0.f : (v > 6.f ? 6.f : v);
    case Activation::kHardSwish: {
      float r = v + 3.f;
      r = r < 0.f ? 0.f : (r > 6.f ? 6.f : r);
      return v * r / 6.f;
    }
    case Activation::kSilu:
      return v / (1.f + expf(-v));
    case Activation::kSigmoid:
      return 1.f / (1.f + expf(-v));
    case Activation::kLeakyRelu:
      return v > 0.f ? v : alpha * v;
    default:
      return v;
  }
}

// conv + bias -> act -> (+ residual) -> post_act for one output cell; accumulation in fp32.
//   input [N, C_in, H, W], weight [C_out, C_in/groups, kh, kw], residual [N, C_out, Ho, Wo]
template <typename T>
PASSRT_HD float convCell(const SparseConvParams& p, const T* input, const T* weight, const T* bias, const T* residual,
                         int32_t n, int32_t co, int32_t oy, int32_t ox) {
  const int32_t cinPerGroup = p.in_channels / p.groups;
  const int32_t coutPerGroup = p.out_channels / p.groups;
  const int32_t ciBase = (co / coutPerGroup) * cinPerGroup;
  float acc = bias ? toFloat(bias[co]) : 0.f;
  for (int32_t ci = 0; ci < cinPerGroup; ++ci) {
    const T* plane = input + ((int64_t)n * p.in_channels + ciBase + ci) * p.in_h * p.in_w;
    const T* w = weight + ((int64_t)co * cinPerGroup + ci) * p.kernel_h * p.kernel_w;
    for (int32_t ky = 0; ky < p.kernel_h; ++ky) {
      const int32_t iy = oy * p.stride_h - p.pad_top + ky * p.dilation_h;
      if (iy < 0 || iy >= p.in_h) continue;  // zero padding
      for (int32_t kx = 0; kx < p.kernel_w; ++kx) {
        const int32_t ix = ox * p.stride_w - p.pad_left + kx * p.dilation_w;
        if (ix < 0 || ix >= p.in_w) continue;
        acc += toFloat(plane[(int64_t)iy * p.in_w + ix]) * toFloat(w[ky * p.kernel_w + kx]);
      }
    }
  }
  float v = activate(p.act, p.act_alpha, acc);
  if (residual) {
    v += toFloat(residual[(((int64_t)n * p.out_channels + co) * p.out_h + oy) * p.out_w + ox]);
  }
  return activate(p.post_act, p.act_alpha, v);
}

}  // namespace passrt
