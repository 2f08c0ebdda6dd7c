// One passrt::conv_tiles call's geometry and epilogue as the kernels' SparseConvParams, checked: shared
// by the op's CPU (cpu/tiles_cpu.cpp) and CUDA (cuda/tiles_cuda.cu) implementations, so both accept and
// refuse the same calls with the same messages.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <utility>

#include "passrt_kernels.h"

namespace passrt::op {

// Elements between a row cache's consecutive rows: a [cells, C] tensor may be a view of wider rows
// (padded rows, or one group's channels), which the kernels read through in_stride / out_stride.
// Stacked caches ([N, rows, C]) are contiguous, so C.
inline int64_t rowStride(const at::Tensor& t) { return t.dim() == 2 ? t.stride(0) : t.size(-1); }

// A row cache's memory layout: 2-D with unit channel stride and rows at least C apart, or contiguous.
inline bool rowsLaidOut(const at::Tensor& t) {
  return t.dim() == 2 ? t.stride(1) == 1 && t.stride(0) >= t.size(1) : t.is_contiguous();
}

// A depthwise call (groups == C_in == C_out; weight [kh * kw, C], tap-major) rather than a grouped one
// (weight [groups * kh * kw * C_in / groups, C_out / groups], one GEMM operand per group).
inline bool isDepthwise(int64_t groups, int64_t inChannels, int64_t taps, const at::Tensor& weight) {
  return groups > 1 && groups == inChannels && weight.size(0) == taps && weight.size(1) == inChannels;
}

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
  TORCH_CHECK(weight.dim() == 2, op, ": weight must be 2-D (the kernels' layout), got ", weight.sizes());
  p.out_channels = static_cast<int32_t>(isDepthwise(groups, p.in_channels, p.kernel_h * p.kernel_w, weight)
                                            ? p.in_channels
                                            : groups * weight.size(1));
  p.in_stride = static_cast<int32_t>(rowStride(input));
  if (const char* error = checkSparseConv2d(p)) {
    TORCH_CHECK(false, op, ": ", error, "; got in_size ", in_size, ", out_size ", out_size, ", kernel ", kernel,
                ", stride ", stride, ", padding ", padding, ", dilation ", dilation, ", groups ", groups);
  }
  return p;
}

// The output's and residual's row stride (the kernels' out_stride): they must agree.
inline int32_t outStride(const char* op, const at::Tensor& output, const std::optional<at::Tensor>& residual,
                         const char* residualName) {
  const int64_t stride = rowStride(output);
  TORCH_CHECK(!residual || rowStride(*residual) == stride, op, ": ", residualName, " rows must be as far apart as ",
              "the output's (", stride, "), got ", rowStride(*residual));
  return static_cast<int32_t>(stride);
}

}  // namespace passrt::op
