// One passrt::conv_tiles call's geometry and epilogue as the kernels' SparseConvParams, checked: shared
// by the op's CPU (cpu/tiles_cpu.cpp) and CUDA (cuda/tiles_cuda.cu) implementations, so both accept and
// refuse the same calls with the same messages.
#pragma once

#include <ATen/ATen.h>

#include <utility>

#include "passrt_kernels.h"

namespace passrt::op {

inline SparseConvParams convTilesParams(const char* op, const at::Tensor& input, const at::Tensor& weight,
                                        at::IntArrayRef in_size, at::IntArrayRef out_size, at::IntArrayRef kernel,
                                        at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation,
                                        int64_t groups, int64_t tile, int64_t act, double act_alpha,
                                        int64_t post_act) {
  for (const auto& [name, v] : {std::pair<const char*, at::IntArrayRef>{"in_size", in_size}, {"out_size", out_size},
                                {"kernel", kernel}, {"stride", stride}, {"padding", padding}, {"dilation", dilation}}) {
    TORCH_CHECK(v.size() == 2, op, ": ", name, " must have 2 values (height, width), got ", v.size());
  }
  TORCH_CHECK(input.dim() == 2, op, ": input must be [cells, C_in] (NHWC rows), got ", input.sizes());
  SparseConvParams p{};
  p.batch = 1;
  p.in_channels = static_cast<int32_t>(input.size(1));
  p.in_h = static_cast<int32_t>(in_size[0]);
  p.in_w = static_cast<int32_t>(in_size[1]);
  p.out_h = static_cast<int32_t>(out_size[0]);
  p.out_w = static_cast<int32_t>(out_size[1]);
  p.kernel_h = static_cast<int32_t>(kernel[0]);
  p.kernel_w = static_cast<int32_t>(kernel[1]);
  p.stride_h = static_cast<int32_t>(stride[0]);
  p.stride_w = static_cast<int32_t>(stride[1]);
  p.pad_top = static_cast<int32_t>(padding[0]);
  p.pad_left = static_cast<int32_t>(padding[1]);
  p.dilation_h = static_cast<int32_t>(dilation[0]);
  p.dilation_w = static_cast<int32_t>(dilation[1]);
  p.groups = static_cast<int32_t>(groups);
  p.tile = static_cast<int32_t>(tile);
  p.act = static_cast<Activation>(act);
  p.act_alpha = static_cast<float>(act_alpha);
  p.post_act = static_cast<Activation>(post_act);
  const bool depthwise = groups > 1;
  p.out_channels = static_cast<int32_t>(depthwise ? p.in_channels : weight.size(1));
  if (const char* error = checkSparseConv2d(p)) {
    TORCH_CHECK(false, op, ": ", error, "; got in_size ", in_size, ", out_size ", out_size, ", kernel ", kernel,
                ", stride ", stride, ", padding ", padding, ", dilation ", dilation, ", groups ", groups);
  }
  TORCH_CHECK(!depthwise || groups == p.in_channels, op, ": grouped convs other than depthwise (groups == C_in) ",
              "are not supported, got groups ", groups, " for ", p.in_channels, " channels");
  return p;
}

}  // namespace passrt::op
