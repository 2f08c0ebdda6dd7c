// NHWC tile kernels (passrt_tiles.h), CPU float32.
//
// The inner loops run over channels, which are contiguous in NHWC, with no branch inside, so
// the compiler vectorises them (the op is built on the machine it runs on, with -march=native).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "../passrt_tiles.h"

namespace passrt {
namespace {

// 8 floats as one value: GCC/Clang vector extensions, which compile to AVX on x86 and to two NEON
// registers on aarch64 (Jetson) alike; memcpy makes the loads and stores unaligned-safe.
typedef float Vec8 __attribute__((vector_size(32)));

inline Vec8 load8(const float* p) {
  Vec8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

inline void store8(float* p, Vec8 v) { std::memcpy(p, &v, sizeof v); }

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

int64_t tileCells(int32_t out_h, int32_t out_w, int32_t tile, const int64_t* tiles, int64_t count, int32_t* cells,
                  int32_t batch, int64_t out_rows) {
  const int64_t tilesW = (out_w + tile - 1) / tile, tilesAll = tilesW * ((out_h + tile - 1) / tile);
  int64_t n = 0;
  for (int64_t i = 0; i < count; ++i) {
    if (tiles[i] < 0 || tiles[i] >= tilesAll * batch) return -1;
    const int64_t base = (tiles[i] / tilesAll) * out_rows, t = tiles[i] % tilesAll;  // stream b's rows, its tile
    const int32_t y0 = (int32_t)(t / tilesW) * tile, x0 = (int32_t)(t % tilesW) * tile;
    const int32_t y1 = std::min(y0 + tile, out_h), x1 = std::min(x0 + tile, out_w);  // edge tiles overhang
    for (int32_t y = y0; y < y1; ++y)
      for (int32_t x = x0; x < x1; ++x) cells[n++] = (int32_t)(base + y * out_w + x);
  }
  return n;
}

void gatherWindowsNhwc(const SparseConvParams& p, const float* input, const int32_t* cells, int64_t begin,
                       int64_t end, float* cols, int64_t in_rows, int64_t out_rows) {
  const int32_t c = p.in_channels;
  const int64_t k = (int64_t)p.kernel_h * p.kernel_w * c, stride = p.inStride();
  for (int64_t i = begin; i < end; ++i) {
    const int64_t b = out_rows > 0 ? cells[i] / out_rows : 0;  // the stream (no division with one)
    const int32_t cell = (int32_t)(cells[i] - b * out_rows), oy = cell / p.out_w, ox = cell % p.out_w;
    const float* in = input + b * in_rows * stride;
    float* dst = cols + i * k;
    for (int32_t ky = 0; ky < p.kernel_h; ++ky) {
      const int32_t iy = oy * p.stride_h - p.pad_top + ky * p.dilation_h;
      for (int32_t kx = 0; kx < p.kernel_w; ++kx, dst += c) {
        const int32_t ix = ox * p.stride_w - p.pad_left + kx * p.dilation_w;
        if (iy < 0 || iy >= p.in_h || ix < 0 || ix >= p.in_w) {
          std::memset(dst, 0, sizeof(float) * c);  // zero padding
        } else {
          std::memcpy(dst, in + ((int64_t)iy * p.in_w + ix) * stride, sizeof(float) * c);
        }
      }
    }
  }
}

void depthwiseNhwc(const SparseConvParams& p, const float* input, const float* weight, const float* bias,
                   const int32_t* cells, int64_t begin, int64_t end, float* out, int64_t in_rows, int64_t out_rows) {
  // Per cell: the taps inside the input (offsets into input and weight), then 8 channels at a time
  // with the sum in a register across all taps (a loop per tap over few channels would spend more
  // on loop overhead than on arithmetic), the remaining channels one by one.
  const int32_t c = p.out_channels;
  const int64_t stride = p.inStride();
  std::vector<int64_t> inOff(p.kernel_h * p.kernel_w), wOff(p.kernel_h * p.kernel_w);
  for (int64_t i = begin; i < end; ++i) {
    const int64_t b = out_rows > 0 ? cells[i] / out_rows : 0;  // the stream (no division with one)
    const int32_t cell = (int32_t)(cells[i] - b * out_rows), oy = cell / p.out_w, ox = cell % p.out_w;
    int32_t taps = 0;
    for (int32_t ky = 0; ky < p.kernel_h; ++ky) {
      const int32_t iy = oy * p.stride_h - p.pad_top + ky * p.dilation_h;
      if (iy < 0 || iy >= p.in_h) continue;  // zero padding adds nothing
      for (int32_t kx = 0; kx < p.kernel_w; ++kx) {
        const int32_t ix = ox * p.stride_w - p.pad_left + kx * p.dilation_w;
        if (ix < 0 || ix >= p.in_w) continue;
        inOff[taps] = (b * in_rows + (int64_t)iy * p.in_w + ix) * stride;
        wOff[taps++] = (int64_t)(ky * p.kernel_w + kx) * c;
      }
    }
    float* acc = out + i * c;
    int32_t ch = 0;
    for (; ch + 8 <= c; ch += 8) {
      Vec8 sum = bias ? load8(bias + ch) : Vec8{};
      for (int32_t t = 0; t < taps; ++t) sum += load8(input + inOff[t] + ch) * load8(weight + wOff[t] + ch);
      store8(acc + ch, sum);
    }
    for (; ch < c; ++ch) {
      float sum = bias ? bias[ch] : 0.f;
      for (int32_t t = 0; t < taps; ++t) sum += input[inOff[t] + ch] * weight[wOff[t] + ch];
      acc[ch] = sum;
    }
  }
}

void epilogueNhwc(const SparseConvParams& p, int32_t channels, float* y, const float* bias, const float* residual,
                  const int32_t* cells, int64_t begin, int64_t end, float* output) {
  const int64_t stride = p.out_stride > 0 ? p.out_stride : channels;  // residual and output rows
  for (int64_t i = begin; i < end; ++i) {
    float* __restrict v = y + i * channels;
    if (bias) {
      for (int32_t c = 0; c < channels; ++c) v[c] += bias[c];
    }
    activateRow(p.act, p.act_alpha, v, channels);
    if (residual) {
      const float* __restrict r = residual + (int64_t)cells[i] * stride;
      for (int32_t c = 0; c < channels; ++c) v[c] += r[c];
    }
    activateRow(p.post_act, p.act_alpha, v, channels);
    if (output) std::memcpy(output + (int64_t)cells[i] * stride, v, sizeof(float) * channels);
  }
}

void affineNhwc(int32_t channels, const float* input, const float* scale, const float* shift, const int32_t* cells,
                int64_t begin, int64_t end, float* output) {
  for (int64_t i = begin; i < end; ++i) {
    const float* __restrict x = input + (int64_t)cells[i] * channels;
    float* __restrict y = output + (int64_t)cells[i] * channels;
    for (int32_t c = 0; c < channels; ++c) y[c] = x[c] * scale[c] + shift[c];
  }
}

}  // namespace passrt
