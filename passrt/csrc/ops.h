// Shared by the backends of passrt's PyTorch op (cpu/ops_cpu.cpp, cuda/ops_cuda.cu): the
// argument checks and the translation of tensors into the kernel API's parameters
// (kernels/passrt_kernels.h). Defined in ops.cpp, next to the schemas they enforce.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/DeviceType.h>

#include <cstdint>
#include <optional>

#include "passrt_kernels.h"

namespace passrt::op {

// What a backend's kernels accept.
struct Backend {
  c10::DeviceType device;
  bool half;  // float16 supported (CUDA) or float32 only (CPU)
};

// Checks every argument of passrt::sparse_conv2d (devices, dtypes, contiguity, shapes, geometry,
// aliasing) and returns the kernel parameters; TORCH_CHECK errors name the argument at fault.
SparseConvParams sparseConvParams(const at::Tensor& input, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& residual,
                                  const at::Tensor& tile_mask, const at::Tensor& output, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, int64_t tile,
                                  int64_t act, double act_alpha, int64_t post_act, Backend backend);

DataType dataType(const at::Tensor& t);

}  // namespace passrt::op
