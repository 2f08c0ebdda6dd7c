// CPU kernel of passrt's PyTorch op: checks (ops.cpp), then the float32 CPU twins of the
// CUDA kernels (kernels/cpu). Reference speed, not production speed: passrt's CPU
// engine runs the pure-PyTorch tile kernels instead.
#include <torch/library.h>

#include <optional>

#include "ops.h"

namespace passrt::op {
namespace {

constexpr Backend kCpu{c10::DeviceType::CPU, /*half=*/false};

template <typename T>
const T* ptrOrNull(const std::optional<at::Tensor>& t) {
  return t ? t->data_ptr<T>() : nullptr;
}

void sparseConv2dCpuOp(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       const std::optional<at::Tensor>& residual, const at::Tensor& tile_mask, at::Tensor& output,
                       at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                       int64_t tile, int64_t act, double act_alpha, int64_t post_act) {
  const SparseConvParams p = sparseConvParams(input, weight, bias, residual, tile_mask, output, stride, padding,
                                              dilation, groups, tile, act, act_alpha, post_act, kCpu);
  if (output.numel() == 0) return;
  sparseConv2dCpu(p, input.data_ptr<float>(), weight.data_ptr<float>(), ptrOrNull<float>(bias),
                  ptrOrNull<float>(residual), tile_mask.data_ptr<float>(), output.data_ptr<float>());
}

}  // namespace
}  // namespace passrt::op

TORCH_LIBRARY_IMPL(passrt, CPU, m) { m.impl("sparse_conv2d", &passrt::op::sparseConv2dCpuOp); }
