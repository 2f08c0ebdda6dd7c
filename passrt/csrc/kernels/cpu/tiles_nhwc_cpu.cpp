// NHWC tile kernels (passrt_tiles.h), CPU float32.
//
// The inner loops run over channels, which are contiguous in NHWC, with no branch inside, so
// the compiler vectorises them (the op is built on the machine it runs on, with -march=native).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "../passrt_tiles.h"

namespace passrt {
namespace {

// One activation over a row of n values, the switch outside the loop so each case vectorises.
void activateRow(Activation act, float alpha, float* __restrict v, int32_t n) {
  switch (act) {
    case Activation::kNone:
      return;
    case Activation::kRelu:
      for (int32_t c = 0; c < n; ++c) v[c] = v[c] > 0.f ? v[c] : 0.f;
      return;
    case Activation::kRelu6:
      for (int32_t c = 0; c < n; ++c) v[c] = std::min(std::max(v[c], 0.f), 6.f);
      return;
    case Activation::kHardSwish:
      for (int32_t c = 0; c < n; ++c) v[c] = v[c] * std::min(std::max(v[c] + 3.f, 0.f), 6.f) / 6.f;
      return;
    case Activation::kSilu:
      for (int32_t c = 0; c < n; ++c) v[c] = v[c] / (1.f + std::exp(-v[c]));
      return;
    case Activation::kSigmoid:
      for (int32_t c = 0; c < n; ++c) v[c] = 1.f / (1.f + std::exp(-v[c]));
      return;
    case Activation::kLeakyRelu:
      for (int32_t c = 0; c < n; ++c) v[c] = v[c] > 0.f ? v[c] : alpha * v[c];
      return;
  }
}

}  // namespace

int64_t tileCells(int32_t out_h, int32_t out_w, int32_t tile, const int64_t* tiles, int64_t count, int32_t* cells) {
  const int64_t tilesW = (out_w + tile - 1) / tile, tilesAll = tilesW * ((out_h + tile - 1) / tile);
  int64_t n = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (tiles[i] < 0 || tiles[i] >= tilesAll) return -1;
    const int32_t y0 = (int32_t)(tiles[i] / tilesW) * tile, x0 = (int32_t)(tiles[i] % tilesW) * tile;
    const int32_t y1 = std::min(y0 + tile, out_h), x1 = std::min(x0 + tile, out_w);  // edge tiles overhang
    for (int32_t y = y0; y < y1; ++y)
      for (int32_t x = x0; x < x1; ++x) cells[n++] = y * out_w + x;
  }
  return n;
}

void gatherWindowsNhwc(const SparseConvParams& p, const float* input, const int32_t* cells, int64_t begin,
                       int64_t end, float* cols) {
  const int32_t c = p.in_channels;
  const int64_t k = (int64_t)p.kernel_h * p.kernel_w * c;
  for (int64_t i = begin; i < end; ++i) {
    const int32_t oy = cells[i] / p.out_w, ox = cells[i] % p.out_w;
    float* dst = cols + i * k;
    for (int32_t ky = 0; ky < p.kernel_h; ++ky) {
      const int32_t iy = oy * p.stride_h - p.pad_top + ky * p.dilation_h;
      for (int32_t kx = 0; kx < p.kernel_w; ++kx, dst += c) {
        const int32_t ix = ox * p.stride_w - p.pad_left + kx * p.dilation_w;
        if (iy < 0 || iy >= p.in_h || ix < 0 || ix >= p.in_w) {
          std::memset(dst, 0, sizeof(float) * c);  // zero padding
        } else {
          std::memcpy(dst, input + ((int64_t)iy * p.in_w + ix) * c, sizeof(float) * c);
        }
      }
    }
  }
}

void depthwiseNhwc(const SparseConvParams& p, const float* input, const float* weight, const float* bias,
                   const int32_t* cells, int64_t begin, int64_t end, float* out) {
  const int32_t c = p.out_channels;
  for (int64_t i = begin; i < end; ++i) {
    const int32_t oy = cells[i] / p.out_w, ox = cells[i] % p.out_w;
    float* __restrict acc = out + i * c;
    if (bias) {
      std::memcpy(acc, bias, sizeof(float) * c);
    } else {
      std::memset(acc, 0, sizeof(float) * c);
    }
    for (int32_t ky = 0; ky < p.kernel_h; ++ky) {
      const int32_t iy = oy * p.stride_h - p.pad_top + ky * p.dilation_h;
      if (iy < 0 || iy >= p.in_h) continue;  // zero padding adds nothing
      for (int32_t kx = 0; kx < p.kernel_w; ++kx) {
        const int32_t ix = ox * p.stride_w - p.pad_left + kx * p.dilation_w;
        if (ix < 0 || ix >= p.in_w) continue;
        const float* __restrict x = input + ((int64_t)iy * p.in_w + ix) * c;
        const float* __restrict w = weight + (int64_t)(ky * p.kernel_w + kx) * c;
        for (int32_t ch = 0; ch < c; ++ch) acc[ch] += x[ch] * w[ch];
      }
    }
  }
}

void epilogueNhwc(const SparseConvParams& p, int32_t channels, float* y, const float* residual,
                  const int32_t* cells, int64_t begin, int64_t end, float* output) {
  for (int64_t i = begin; i < end; ++i) {
    float* __restrict v = y + i * channels;
    activateRow(p.act, p.act_alpha, v, channels);
    if (residual) {
      const float* __restrict r = residual + (int64_t)cells[i] * channels;
      for (int32_t c = 0; c < channels; ++c) v[c] += r[c];
    }
    activateRow(p.post_act, p.act_alpha, v, channels);
    if (output) std::memcpy(output + (int64_t)cells[i] * channels, v, sizeof(float) * channels);
  }
}

}  // namespace passrt
