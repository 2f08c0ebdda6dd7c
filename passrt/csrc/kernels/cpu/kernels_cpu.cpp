// C entry point over the CPU twin (sparse_conv2d_cpu.cpp), for tests and FFI (ctypes): the
// C++ names are mangled. Link this file with it.
#include "../passrt_kernels.h"

extern "C" {
void passrt_sparse_conv2d_cpu(const passrt::SparseConvParams* p, const float* input, const float* weight,
                              const float* bias, const float* residual, const float* tile_mask, float* output) {
  passrt::sparseConv2dCpu(*p, input, weight, bias, residual, tile_mask, output);
}
}
