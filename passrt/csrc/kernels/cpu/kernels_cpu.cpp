// C entry points over the CPU twins (sparse_conv2d_cpu.cpp, mask_kernels_cpu.cpp), for
// tests and FFI (ctypes): the C++ names are mangled. Link this file with those two.
#include "../passrt_kernels.h"

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
