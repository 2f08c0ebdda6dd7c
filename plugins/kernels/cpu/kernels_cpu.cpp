// CPU twins of the CUDA kernels (float32): same arguments minus the stream, same per-cell
// arithmetic (conv_cell.h). They are the reference the CUDA tests compare with, and are
// themselves tested against passrt's PyTorch reference through the C entry points below.
#include <algorithm>
#include <cmath>

#include "../conv_cell.h"

namespace passrt {

void sparseConv2dCpu(const SparseConvParams& p, const float* input, const float* weight, const float* bias,
                     const float* residual, const float* tile_mask, float* output) {
  const int32_t th = p.tilesH(), tw = p.tilesW();
  for (int32_t n = 0; n < p.batch; ++n)
    for (int32_t t = 0; t < th * tw; ++t) {
      if (tile_mask[(int64_t)n * th * tw + t] <= 0.5f) continue;
      const int32_t y0 = (t / tw) * p.tile, x0 = (t % tw) * p.tile;
      for (int32_t co = 0; co < p.out_channels; ++co)
        for (int32_t oy = y0; oy < std::min(y0 + p.tile, p.out_h); ++oy)
          for (int32_t ox = x0; ox < std::min(x0 + p.tile, p.out_w); ++ox)
            output[(((int64_t)n * p.out_channels + co) * p.out_h + oy) * p.out_w + ox] =
                convCell(p, input, weight, bias, residual, n, co, oy, ox);
    }
}

void changeMapCpu(const float* x, float* x_ref, int32_t batch, int32_t channels, int32_t h, int32_t w,
                  float threshold, int32_t update_ref, float* changed) {
  const int64_t hw = (int64_t)h * w;
  for (int32_t n = 0; n < batch; ++n)
    for (int64_t pix = 0; pix < hw; ++pix) {
      float diff = 0.f;
      for (int32_t c = 0; c < channels; ++c) {
        const int64_t k = ((int64_t)n * channels + c) * hw + pix;
        diff = std::max(diff, std::fabs(x[k] - x_ref[k]));
      }
      const bool hit = diff > threshold;
      changed[n * hw + pix] = hit ? 1.f : 0.f;
      if (hit && update_ref)
        for (int32_t c = 0; c < channels; ++c) {
          const int64_t k = ((int64_t)n * channels + c) * hw + pix;
          x_ref[k] = x[k];
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
  const int32_t th = (h + tile - 1) / tile, tw = (w + tile - 1) / tile;
  for (int32_t n = 0; n < batch; ++n)
    for (int32_t t = 0; t < th * tw; ++t) {
      const int32_t y0 = (t / tw) * tile, x0 = (t % tw) * tile;
      float any = 0.f;
      for (int32_t y = y0; y < std::min(y0 + tile, h); ++y)
        for (int32_t x = x0; x < std::min(x0 + tile, w); ++x)
          if (changed[((int64_t)n * h + y) * w + x] > 0.5f) any = 1.f;
      tiles[(int64_t)n * th * tw + t] = any;
    }
}

void dilateTilesCpu(const float* in, int32_t batch, int32_t tiles_h, int32_t tiles_w, int32_t radius, float* out) {
  for (int32_t n = 0; n < batch; ++n)
    for (int32_t ty = 0; ty < tiles_h; ++ty)
      for (int32_t tx = 0; tx < tiles_w; ++tx) {
        float any = 0.f;
        for (int32_t y = std::max(ty - radius, 0); y <= std::min(ty + radius, tiles_h - 1); ++y)
          for (int32_t x = std::max(tx - radius, 0); x <= std::min(tx + radius, tiles_w - 1); ++x)
            if (in[((int64_t)n * tiles_h + y) * tiles_w + x] > 0.5f) any = 1.f;
        out[((int64_t)n * tiles_h + ty) * tiles_w + tx] = any;
      }
}

}  // namespace passrt

// C entry points for tests and FFI (ctypes): C++ names are mangled.
extern "C" {
void passrt_sparse_conv2d_cpu(const passrt::SparseConvParams* p, const float* input, const float* weight,
                              const float* bias, const float* residual, const float* tile_mask, float* output) {
  passrt::sparseConv2dCpu(*p, input, weight, bias, residual, tile_mask, output);
}
void passrt_change_map_cpu(const float* x, float* x_ref, int32_t batch, int32_t channels, int32_t h, int32_t w,
                           float threshold, int32_t update_ref, float* changed) {
  passrt::changeMapCpu(x, x_ref, batch, channels, h, w, threshold, update_ref, changed);
}
void passrt_propagate_window_cpu(const passrt::WindowParams* p, const float* in, float* out) {
  passrt::propagateWindowCpu(*p, in, out);
}
void passrt_reduce_to_tiles_cpu(const float* changed, int32_t batch, int32_t h, int32_t w, int32_t tile,
                                float* tiles) {
  passrt::reduceToTilesCpu(changed, batch, h, w, tile, tiles);
}
void passrt_dilate_tiles_cpu(const float* in, int32_t batch, int32_t th, int32_t tw, int32_t radius, float* out) {
  passrt::dilateTilesCpu(in, batch, th, tw, radius, out);
}
}
