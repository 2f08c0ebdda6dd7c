// CPU twins of the mask kernels (passrt_kernels.h), float32: the PyTorch op's CPU kernels and
// the reference the CUDA tests compare with. Plain loops, one output element at a time, in
// the same order as the CUDA kernels' threads.
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "../conv_cell.h"
#include "../passrt_kernels.h"

namespace passrt {

void changeMapCpu(const float* x, float* x_ref, int32_t batch, int32_t channels, int32_t h, int32_t w,
                  float threshold, int32_t update_ref, float* changed) {
  const int64_t hw = (int64_t)h * w;
  for (int64_t n = 0; n < batch; ++n)
    for (int64_t pix = 0; pix < hw; ++pix) {
      float diff = 0.f;
      for (int32_t c = 0; c < channels; ++c) {
        const int64_t k = (n * channels + c) * hw + pix;
        diff = std::max(diff, std::fabs(x[k] - x_ref[k]));
      }
      const bool hit = diff > threshold;
      changed[n * hw + pix] = hit ? 1.f : 0.f;
      if (hit && update_ref) {  // the reference moves only where a change was detected
        for (int32_t c = 0; c < channels; ++c) {
          const int64_t k = (n * channels + c) * hw + pix;
          x_ref[k] = x[k];
        }
      }
    }
}

void propagateWindowCpu(const WindowParams& p, const float* changed_in, float* changed_out) {
  for (int32_t n = 0; n < p.batch; ++n)
    for (int32_t oy = 0; oy < p.out_h; ++oy)
      for (int32_t ox = 0; ox < p.out_w; ++ox)
        changed_out[((int64_t)n * p.out_h + oy) * p.out_w + ox] = windowTouchesChange(p, changed_in, n, oy, ox);
}

void reduceToTilesCpu(const float* changed, int32_t batch, int32_t h, int32_t w, int32_t tile, float* tiles) {
  if (tile <= 0) return;  // callers validate
  const int32_t th = (h + tile - 1) / tile, tw = (w + tile - 1) / tile;
  for (int64_t n = 0; n < batch; ++n)
    for (int32_t ty = 0; ty < th; ++ty)
      for (int32_t tx = 0; tx < tw; ++tx) {
        float any = 0.f;
        for (int32_t y = ty * tile; y < std::min((ty + 1) * tile, h); ++y)  // tiles overhang the edge
          for (int32_t x = tx * tile; x < std::min((tx + 1) * tile, w); ++x)
            if (changed[(n * h + y) * w + x] > 0.5f) any = 1.f;
        tiles[(n * th + ty) * tw + tx] = any;
      }
}

void dilateTilesCpu(const float* in, int32_t batch, int32_t tiles_h, int32_t tiles_w, int32_t radius, float* out) {
  radius = std::max(0, std::min(radius, std::max(tiles_h, tiles_w)));  // wider reaches nothing more
  for (int64_t n = 0; n < batch; ++n)
    for (int32_t ty = 0; ty < tiles_h; ++ty)
      for (int32_t tx = 0; tx < tiles_w; ++tx) {
        float any = 0.f;
        for (int32_t y = std::max(ty - radius, 0); y <= std::min(ty + radius, tiles_h - 1); ++y)
          for (int32_t x = std::max(tx - radius, 0); x <= std::min(tx + radius, tiles_w - 1); ++x)
            if (in[(n * tiles_h + y) * tiles_w + x] > 0.5f) any = 1.f;
        out[(n * tiles_h + ty) * tiles_w + tx] = any;
      }
}

}  // namespace passrt
