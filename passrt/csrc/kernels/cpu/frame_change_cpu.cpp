// Frame-level change kernels (passrt_tiles.h), CPU float32: one pass over the pixels each.
#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include "../passrt_tiles.h"

namespace passrt {
namespace {

inline float pixelChange(int32_t channels, const FrameView& a, const FrameView& b, int64_t y, int64_t x) {
  const float* pa = a.data + y * a.y_stride + x * a.x_stride;
  const float* pb = b.data + y * b.y_stride + x * b.x_stride;
  float m = std::fabs(pa[0] - pb[0]);
  for (int32_t c = 1; c < channels; ++c) m = std::max(m, std::fabs(pa[c * a.c_stride] - pb[c * b.c_stride]));
  return m;
}

}  // namespace

void blockRankChange(int32_t channels, int32_t block, int32_t rank, int64_t cols, FrameView a, FrameView b,
                     int64_t begin, int64_t end, float* out) {
  const int64_t n = (int64_t)block * block;
  const int64_t k = std::max<int64_t>(1, std::min<int64_t>(rank, n));
  std::vector<float> values(n);
  for (int64_t i = begin; i < end; ++i) {
    const int64_t y0 = (i / cols) * 2 * block, x0 = (i % cols) * 2 * block;
    float* v = values.data();
    for (int64_t y = y0; y < y0 + block; ++y)
      for (int64_t x = x0; x < x0 + block; ++x) *v++ = pixelChange(channels, a, b, y, x);
    // The k-th largest: what topk(k).values[-1] gives, in linear time.
    std::nth_element(values.begin(), values.begin() + (k - 1), values.end(), std::greater<float>());
    out[i] = values[k - 1];
  }
}

void blockChangeCounts(int32_t channels, int32_t h, int32_t w, int32_t block, float limit, FrameView a, FrameView b,
                       int64_t begin, int64_t end, float* counts) {
  const int64_t blocksW = (w + block - 1) / block;
  std::vector<int32_t> row(blocksW);
  for (int64_t by = begin; by < end; ++by) {
    std::fill(row.begin(), row.end(), 0);
    const int64_t y1 = std::min<int64_t>((by + 1) * block, h);
    for (int64_t y = by * block; y < y1; ++y) {
      for (int64_t bx = 0; bx < blocksW; ++bx) {
        const int64_t x1 = std::min<int64_t>((bx + 1) * block, w);
        int32_t n = 0;
        for (int64_t x = bx * block; x < x1; ++x) n += pixelChange(channels, a, b, y, x) > limit;
        row[bx] += n;
      }
    }
    const float rows = static_cast<float>(y1 - by * block);
    for (int64_t bx = 0; bx < blocksW; ++bx) {
      const float area = rows * static_cast<float>(std::min<int64_t>((bx + 1) * block, w) - bx * block);
      counts[by * blocksW + bx] = static_cast<float>(row[bx]) / area * static_cast<float>(block * block);
    }
  }
}

void copyBlocks(int32_t channels, int32_t h, int32_t w, int32_t block, const float* mask, FrameView src, FrameView dst,
                int64_t begin, int64_t end) {
  const int64_t blocksW = (w + block - 1) / block;
  for (int64_t by = begin; by < end; ++by) {
    const int64_t y1 = std::min<int64_t>((by + 1) * block, h);
    for (int64_t bx = 0; bx < blocksW; ++bx) {
      if (mask[by * blocksW + bx] <= 0.5f) continue;
      const int64_t x1 = std::min<int64_t>((bx + 1) * block, w);
      for (int32_t c = 0; c < channels; ++c)
        for (int64_t y = by * block; y < y1; ++y)
          for (int64_t x = bx * block; x < x1; ++x)
            dst.data[c * dst.c_stride + y * dst.y_stride + x * dst.x_stride] =
                src.data[c * src.c_stride + y * src.y_stride + x * src.x_stride];
    }
  }
}

}  // namespace passrt
