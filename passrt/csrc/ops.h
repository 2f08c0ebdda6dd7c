// Shared by the backends of passrt's PyTorch ops (cpu/ops_cpu.cpp, cuda/ops_cuda.cu): the
// argument checks and the translation of tensors into the kernel API's parameters
// (kernels/passrt_kernels.h). Defined in ops.cpp, next to the schemas they enforce.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/DeviceType.h>

#include <cstdint>
#include <optional>
#include <vector>

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

// A change map or tile mask [..., H, W] (float32 0/1, contiguous); leading dims are the batch.
struct MapShape {
  int32_t batch, h, w;
};
MapShape checkMap(const char* op, const char* name, const at::Tensor& t, Backend backend);

// Checks passrt::change_map's x and x_ref ([N, C, H, W], same dtype/device, contiguous).
void checkChangeMap(const at::Tensor& x, const at::Tensor& x_ref, Backend backend);

// Checks passrt::propagate_window's arguments and returns the window geometry.
WindowParams windowParams(const at::Tensor& changed, at::IntArrayRef out_size, at::IntArrayRef kernel,
                          at::IntArrayRef stride, at::IntArrayRef dilation, at::IntArrayRef padding, Backend backend);

// The sizes of `t` with its last two replaced by (h, w): the shape of a derived map.
std::vector<int64_t> mapSizes(const at::Tensor& t, int64_t h, int64_t w);

// Checks passrt::reduce_to_tiles' / dilate_tiles' integer argument.
void checkPositive(const char* op, const char* name, int64_t v, int64_t min);

DataType dataType(const at::Tensor& t);

}  // namespace passrt::op
