// Frame-level change kernels (passrt_tiles.h), CPU float32: one pass over the pixels each.
#include <algorithm>
#include <cmath>
#include <vector>

#include "../passrt_tiles.h"

namespace passrt {
namespace {

// Channels-last frames (what a decoder gives: a pixel's channels adjacent) with C known at compile
// time: the loops over pixels vectorise (grouped loads), 3 channels being the case of every video.
template <int C>
void changeInterleaved(const float* __restrict pa, const float* __restrict pb, int64_t n, float* __restrict out) {
  for (int64_t x = 0; x < n; ++x) {
    float m = std::fabs(pa[x * C] - pb[x * C]);
    for (int c = 1; c < C; ++c) m = std::max(m, std::fabs(pa[x * C + c] - pb[x * C + c]));
    out[x] = m;
  }
}

bool interleaved(int32_t channels, const FrameView& a, const FrameView& b) {
  return channels == 3 && a.c_stride == 1 && b.c_stride == 1 && a.x_stride == 3 && b.x_stride == 3;
}

// out[x - x0] = max over channels |a - b| at (y, x), x in [x0, x1). A planar frame (NCHW) is read
// channel by channel, the loops over x vectorising; other strides take the same loop.
void changeRow(int32_t channels, const FrameView& a, const FrameView& b, int64_t y, int64_t x0, int64_t x1,
               float* __restrict out) {
  const int64_t n = x1 - x0, sa = a.x_stride, sb = b.x_stride;
  if (interleaved(channels, a, b)) {
    changeInterleaved<3>(a.data + y * a.y_stride + x0 * 3, b.data + y * b.y_stride + x0 * 3, n, out);
    return;
  }
  for (int32_t c = 0; c < channels; ++c) {
    const float* __restrict pa = a.data + c * a.c_stride + y * a.y_stride + x0 * sa;
    const float* __restrict pb = b.data + c * b.c_stride + y * b.y_stride + x0 * sb;
    if (c == 0) {
      for (int64_t x = 0; x < n; ++x) out[x] = std::fabs(pa[x * sa] - pb[x * sb]);
    } else {
      for (int64_t x = 0; x < n; ++x) out[x] = std::max(out[x], std::fabs(pa[x * sa] - pb[x * sb]));
    }
  }
}

// ref[x] = a[x] at the pixels where changed[x] is 1, every channel, for channels-last rows.
template <int C>
void blendInterleaved(const float* __restrict pa, float* __restrict pr, const float* __restrict changed, int64_t n) {
  for (int64_t x = 0; x < n; ++x) {
    const bool take = changed[x] > 0.f;
    for (int c = 0; c < C; ++c) pr[x * C + c] = take ? pa[x * C + c] : pr[x * C + c];
  }
}

}  // namespace

void blockRankChange(int32_t channels, int32_t block, int32_t rank, int64_t cols, FrameView a, const FrameView* others,
                     int32_t count, int64_t blocks, int64_t begin, int64_t end, float* out) {
  const int64_t n = (int64_t)block * block;
  const int64_t k = std::max<int64_t>(1, std::min<int64_t>(rank, n));
  // A whole row of sampled blocks at a time, pixel row by pixel row, so the frames are read along their rows.
  // Block by block (16 strided rows of a few cache lines each) took 1.1 ms instead of 0.7 ms in a sparse
  // vtest frame, whose other work has evicted the frames from the caches.
  std::vector<float> values(static_cast<size_t>(count) * cols * n);
  std::vector<float> top(k);
  for (int64_t r = begin; r < end; ++r) {
    const int64_t y0 = r * 2 * block;
    for (int64_t y = y0; y < y0 + block; ++y)
      for (int32_t j = 0; j < count; ++j)
        for (int64_t c = 0; c < cols; ++c)
          changeRow(channels, a, others[j], y, c * 2 * block, c * 2 * block + block,
                    values.data() + ((j * cols + c) * n + (y - y0) * block));
    for (int32_t j = 0; j < count; ++j) {
      for (int64_t c = 0; c < cols; ++c) {
        // The k-th largest (what topk(k).values[-1] gives): the k largest so far, sorted descending, in
        // `top`; changes are >= 0, so the -1 fill is displaced by any value, and once `top` is full most
        // values fail the first comparison.
        const float* v = values.data() + (j * cols + c) * n;
        std::fill(top.begin(), top.end(), -1.f);
        for (int64_t i = 0; i < n; ++i) {
          if (v[i] <= top[k - 1]) continue;
          int64_t m = k - 1;
          for (; m > 0 && top[m - 1] < v[i]; --m) top[m] = top[m - 1];
          top[m] = v[i];
        }
        out[j * blocks + r * cols + c] = top[k - 1];
      }
    }
  }
}

void blockChangeCounts(int32_t channels, int32_t h, int32_t w, int32_t block, float limit, FrameView a, FrameView b,
                       int64_t begin, int64_t end, float* counts) {
  const int64_t blocksW = (w + block - 1) / block;
  std::vector<int32_t> row(blocksW);
  std::vector<float> change(w);
  for (int64_t by = begin; by < end; ++by) {
    std::fill(row.begin(), row.end(), 0);
    const int64_t y1 = std::min<int64_t>((by + 1) * block, h);
    for (int64_t y = by * block; y < y1; ++y) {
      changeRow(channels, a, b, y, 0, w, change.data());
      for (int64_t bx = 0; bx < blocksW; ++bx) {
        const int64_t x1 = std::min<int64_t>((bx + 1) * block, w);
        int32_t n = 0;
        for (int64_t x = bx * block; x < x1; ++x) n += static_cast<int32_t>(change[x] > limit);
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

void blockFeatures(int32_t channels, int32_t h, int32_t w, int32_t block, const float* limits, int32_t count,
                   FrameView a, FrameView b, int64_t begin, int64_t end, float* out) {
  const int64_t blocksW = (w + block - 1) / block, plane = ((h + block - 1) / block) * blocksW;
  const int32_t stats = count + 2 + 2 * channels;
  // Per column of the block row, summed over its rows ([stat][x]: counts, sum, max, then a's and b's
  // channels), so every loop runs along a whole row and vectorises; reduced to blocks at the end.
  std::vector<float> col(static_cast<size_t>(stats) * w);
  std::vector<float> change(w);
  for (int64_t by = begin; by < end; ++by) {
    std::fill(col.begin(), col.end(), 0.f);
    float* __restrict sum = col.data() + count * w;
    float* __restrict peak = sum + w;
    const int64_t y1 = std::min<int64_t>((by + 1) * block, h);
    for (int64_t y = by * block; y < y1; ++y) {
      changeRow(channels, a, b, y, 0, w, change.data());
      const float* __restrict d = change.data();
      for (int32_t k = 0; k < count; ++k) {
        float* __restrict n = col.data() + k * w;
        const float limit = limits[k];
        for (int64_t x = 0; x < w; ++x) n[x] += d[x] > limit ? 1.f : 0.f;
      }
      for (int64_t x = 0; x < w; ++x) {
        sum[x] += d[x];
        peak[x] = std::max(peak[x], d[x]);
      }
      for (int32_t c = 0; c < 2 * channels; ++c) {
        const FrameView& f = c < channels ? a : b;
        const float* p = f.data + (c % channels) * f.c_stride + y * f.y_stride;
        float* __restrict t = peak + (c + 1) * w;
        if (f.x_stride == 1) {
          for (int64_t x = 0; x < w; ++x) t[x] += p[x];
        } else {
          for (int64_t x = 0; x < w; ++x) t[x] += p[x * f.x_stride];
        }
      }
    }
    const float rows = static_cast<float>(y1 - by * block);
    for (int64_t bx = 0; bx < blocksW; ++bx) {
      const int64_t x0 = bx * block, x1 = std::min<int64_t>(x0 + block, w);
      const float area = rows * static_cast<float>(x1 - x0);
      for (int32_t s = 0; s < stats; ++s) {
        const float* v = col.data() + s * w;
        float r = s == count + 1 ? v[x0] : 0.f;
        for (int64_t x = x0; x < x1; ++x) r = s == count + 1 ? std::max(r, v[x]) : r + v[x];
        out[s * plane + by * blocksW + bx] = s == count + 1 ? r : r / area;
      }
    }
  }
}

void pixelChanges(int32_t channels, int32_t w, float limit, FrameView a, FrameView ref, int64_t begin, int64_t end,
                  float* changed) {
  // Branch-free: the 0/1 map, then every channel of ref blended with a under it. Where pixels that
  // changed and pixels that did not interleave (noise, textured motion) a branch per pixel mispredicted
  // half the time: 8.5 ms for a 1280x720 frame on one thread, 3-4 ms blended.
  for (int64_t y = begin; y < end; ++y) {
    float* __restrict row = changed + y * w;
    changeRow(channels, a, ref, y, 0, w, row);
    for (int64_t x = 0; x < w; ++x) row[x] = row[x] > limit ? 1.f : 0.f;
    if (interleaved(channels, a, ref)) {
      blendInterleaved<3>(a.data + y * a.y_stride, ref.data + y * ref.y_stride, row, w);
      continue;
    }
    for (int32_t c = 0; c < channels; ++c) {
      const float* __restrict pa = a.data + c * a.c_stride + y * a.y_stride;
      float* __restrict pr = ref.data + c * ref.c_stride + y * ref.y_stride;
      if (a.x_stride == 1 && ref.x_stride == 1) {
        for (int64_t x = 0; x < w; ++x) pr[x] = row[x] > 0.f ? pa[x] : pr[x];
      } else {
        const int64_t sa = a.x_stride, sr = ref.x_stride;
        for (int64_t x = 0; x < w; ++x) pr[x * sr] = row[x] > 0.f ? pa[x * sa] : pr[x * sr];
      }
    }
  }
}

void rowChanges(int32_t channels, float threshold, const float* src, float* ref, const int64_t* rows, int64_t begin,
                int64_t end, float* own) {
  for (int64_t i = begin; i < end; ++i) {
    const float* __restrict s = src + rows[i] * channels;
    float* __restrict r = ref + rows[i] * channels;
    float m = 0.f;
    for (int32_t c = 0; c < channels; ++c) m = std::max(m, std::fabs(s[c] - r[c]));
    if (m > threshold) {
      std::copy(s, s + channels, r);
      own[rows[i]] = 1.f;
    }
  }
}

void copyBlocks(int32_t channels, int32_t h, int32_t w, int32_t block, const float* mask, FrameView src, FrameView dst,
                int64_t begin, int64_t end) {
  // Runs of adjacent marked blocks, copied row by row as contiguous spans where the layout has them
  // (channels-last: a row's pixels with their channels; planar: a row per channel): an element loop
  // over a channels-last 1280x720 frame took 3.9 ms, longer than copying the whole frame.
  const int64_t blocksW = (w + block - 1) / block;
  const bool pixels = src.c_stride == 1 && dst.c_stride == 1 && src.x_stride == channels && dst.x_stride == channels;
  const bool planes = src.x_stride == 1 && dst.x_stride == 1;
  for (int64_t by = begin; by < end; ++by) {
    const int64_t y0 = by * block, y1 = std::min<int64_t>(y0 + block, h);
    for (int64_t bx = 0; bx < blocksW; ++bx) {
      if (mask[by * blocksW + bx] <= 0.5f) continue;
      int64_t bx1 = bx + 1;
      while (bx1 < blocksW && mask[by * blocksW + bx1] > 0.5f) ++bx1;
      const int64_t x0 = bx * block, x1 = std::min<int64_t>(bx1 * block, w);
      bx = bx1;
      for (int64_t y = y0; y < y1; ++y) {
        if (pixels) {
          std::copy_n(src.data + y * src.y_stride + x0 * channels, (x1 - x0) * channels,
                      dst.data + y * dst.y_stride + x0 * channels);
          continue;
        }
        for (int32_t c = 0; c < channels; ++c) {
          const float* s = src.data + c * src.c_stride + y * src.y_stride;
          float* d = dst.data + c * dst.c_stride + y * dst.y_stride;
          if (planes) {
            std::copy(s + x0, s + x1, d + x0);
          } else {
            for (int64_t x = x0; x < x1; ++x) d[x * dst.x_stride] = s[x * src.x_stride];
          }
        }
      }
    }
  }
}

}  // namespace passrt
