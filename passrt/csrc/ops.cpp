// passrt's PyTorch op: the schema (TORCH_LIBRARY) and the argument checks every backend
// runs before it calls the kernels. Kernels are registered per backend: cpu/ops_cpu.cpp,
// cuda/ops_cuda.cu; fake (meta) kernels for torch.compile/export in passrt/kernels/extension.py.
//
// The op writes into a caller-owned tensor (`output`) because that is the whole point
// of sparse inference: the cache keeps its values outside the active tiles.
#include <ATen/MemoryOverlap.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <limits>
#include <string>
#include <vector>

#include "ops.h"

TORCH_LIBRARY(passrt, m) {
  // Recompute conv -> +bias -> act -> +residual -> post_act on the tiles where tile_mask > 0.5
  // and write them into `output` [N, C_out, H_out, W_out]; other tiles keep their values.
  // padding is (top, left); bottom/right follow from output's size. act/post_act are
  // passrt::Activation codes (0 none, 1 relu, 2 relu6, 3 hardswish, 4 silu, 5 sigmoid, 6 leaky_relu).
  m.def(
      "sparse_conv2d(Tensor input, Tensor weight, Tensor? bias, Tensor? residual, Tensor tile_mask, "
      "Tensor(a!) output, int[2] stride, int[2] padding, int[2] dilation, int groups, int tile, int act, "
      "float act_alpha, int post_act) -> ()");
  // The native CPU executor's conv step (cpu/tiles_cpu.cpp): conv -> epilogue [-> fused 1x1 -> epilogue] on
  // the cells of `tiles` (int64 tile ids), reading and writing NHWC row caches ([cells, C]). weight is
  // [kh * kw * C_in, C_out] (groups 1) or [kh * kw, C] (depthwise, groups == C); follow_weight [C_mid, C_out].
  m.def(
      "conv_tiles(Tensor input, Tensor weight, Tensor? bias, Tensor? residual, Tensor tiles, Tensor(a!) output, "
      "int[2] in_size, int[2] out_size, int[2] kernel, int[2] stride, int[2] padding, int[2] dilation, int groups, "
      "int tile, int act, float act_alpha, int post_act, Tensor? follow_weight, Tensor? follow_bias, "
      "Tensor? follow_residual, int follow_act, float follow_alpha, int follow_post_act) -> ()");
  // The native executor's affine pointwise step: output = input * scale + shift ([C] each) on the cells of
  // `tiles` of a size[0] x size[1] map (NHWC row caches; output may be input).
  m.def("affine_tiles(Tensor input, Tensor scale, Tensor shift, Tensor tiles, Tensor(a!) output, int[2] size, "
        "int tile) -> ()");
  // RegionDrop's three full-frame operations, one pass each (cpu/frame_cpu.cpp; the rule is the tensor
  // ops in passrt/policies, which these equal): frames are (1, C, H, W) float32 of any strides.
  m.def("frame_block_rank_change(Tensor a, Tensor[] others, int block, int rank) -> Tensor");
  m.def("frame_block_counts(Tensor a, Tensor b, float limit, int block) -> Tensor");
  m.def("frame_copy_blocks_(Tensor(a!) dst, Tensor src, Tensor mask, int block) -> ()");
  // PASS's common gate's per-pixel pass (policies/common_gate.py block_statistics, which it equals):
  // [1, len(limits) + 2 + 2C, Hb, Wb] block averages of (d > limit) per limit, d's mean and max, a's and b's
  // channels, where d = max over channels |a - b|.
  m.def("frame_block_features(Tensor a, Tensor b, float[] limits, int block) -> Tensor");
  // exact's per-pixel rule (policies/exact.py): the (1, 1, H, W) 0/1 map of pixels whose max over channels
  // |a - ref| > limit, and ref = a at those pixels.
  m.def("frame_pixel_changes_(Tensor(a!) ref, Tensor a, float limit) -> Tensor");
  // layerwise's per-layer test (policies/layerwise.py) on NHWC row caches [cells(+), C]: the [cells] 0/1 map
  // of the listed rows whose max over channels |src - ref| > threshold, and ref = src on them.
  m.def("row_changes_(Tensor(a!) ref, Tensor src, Tensor rows, float threshold, int cells) -> Tensor");
}

namespace passrt::op {
namespace {

constexpr const char* kConv = "passrt::sparse_conv2d";

int32_t to32(const char* op, const char* what, int64_t v) {
  TORCH_CHECK(v >= 0 && v <= std::numeric_limits<int32_t>::max(), op, ": ", what, " = ", v,
              " is out of range for the kernels (0 .. 2^31 - 1)");
  return static_cast<int32_t>(v);
}

void checkTensor(const char* op, const char* name, const at::Tensor& t, const at::Tensor& like, Backend backend) {
  TORCH_CHECK(t.defined(), op, ": ", name, " is an undefined tensor");
  TORCH_CHECK(t.device().type() == backend.device, op, ": ", name, " is on ", t.device(), ", expected a ",
              c10::DeviceTypeName(backend.device), " tensor");
  TORCH_CHECK(t.device() == like.device(), op, ": ", name, " is on ", t.device(), " but input is on ", like.device());
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous (NCHW); call .contiguous() on it");
}

void checkFloat(const char* op, const char* name, const at::Tensor& t, Backend backend) {
  const auto s = t.scalar_type();
  TORCH_CHECK(s == at::kFloat || (backend.half && s == at::kHalf), op, ": ", name, " has dtype ", s, "; the ",
              c10::DeviceTypeName(backend.device), " kernels take ",
              backend.half ? "float32 or float16" : "float32 only (float16 runs on CUDA)");
}

// A scalar argument narrowed to the kernels' int32 without changing its sign, so that a negative
// stride or padding reaches checkSparseConv2d and gets its message, not an overflow error.
int32_t param32(const char* what, int64_t v) {
  TORCH_CHECK(v >= std::numeric_limits<int32_t>::min() && v <= std::numeric_limits<int32_t>::max(), kConv, ": ", what,
              " = ", v, " is out of range for the kernels (32-bit)");
  return static_cast<int32_t>(v);
}

// `written` may not share memory with `read` (other blocks/threads would read overwritten values).
void checkNoOverlap(const char* op, const char* written_name, const at::Tensor& written, const char* read_name,
                    const at::Tensor& read) {
  const auto status = at::get_overlap_status(written, read);
  TORCH_CHECK(status == at::MemOverlapStatus::No || status == at::MemOverlapStatus::TooHard, op, ": ", written_name,
              " shares memory with ", read_name, "; pass a separate tensor (e.g. ", read_name, ".clone())");
}

void checkPair(const char* name, at::IntArrayRef v) {
  TORCH_CHECK(v.size() == 2, kConv, ": ", name, " must have 2 values (height, width), got ", v.size());
}

}  // namespace

SparseConvParams sparseConvParams(const at::Tensor& input, const at::Tensor& weight,
                                  const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& residual,
                                  const at::Tensor& tile_mask, const at::Tensor& output, at::IntArrayRef stride,
                                  at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, int64_t tile,
                                  int64_t act, double act_alpha, int64_t post_act, Backend backend) {
  checkTensor(kConv, "input", input, input, backend);
  checkFloat(kConv, "input", input, backend);
  const auto dtype = input.scalar_type();
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor*>{"weight", &weight}, {"output", &output}}) {
    checkTensor(kConv, name, *t, input, backend);
    TORCH_CHECK(t->scalar_type() == dtype, kConv, ": ", name, " has dtype ", t->scalar_type(), ", input has ", dtype);
  }
  TORCH_CHECK(input.dim() == 4, kConv, ": input must be [N, C_in, H, W], got ", input.sizes());
  TORCH_CHECK(weight.dim() == 4, kConv, ": weight must be [C_out, C_in / groups, kh, kw], got ", weight.sizes());
  TORCH_CHECK(output.dim() == 4, kConv, ": output must be [N, C_out, H_out, W_out], got ", output.sizes());
  checkPair("stride", stride);
  checkPair("dilation", dilation);
  checkPair("padding (top, left)", padding);

  const int64_t n = input.size(0), cin = input.size(1), cout = weight.size(0);
  SparseConvParams p{};
  p.batch = to32(kConv, "batch", n);
  p.in_channels = to32(kConv, "input channels", cin);
  p.in_h = to32(kConv, "input height", input.size(2));
  p.in_w = to32(kConv, "input width", input.size(3));
  p.out_channels = to32(kConv, "output channels", cout);
  p.out_h = to32(kConv, "output height", output.size(2));
  p.out_w = to32(kConv, "output width", output.size(3));
  p.kernel_h = to32(kConv, "kernel height", weight.size(2));
  p.kernel_w = to32(kConv, "kernel width", weight.size(3));
  p.stride_h = param32("stride", stride[0]);
  p.stride_w = param32("stride", stride[1]);
  p.dilation_h = param32("dilation", dilation[0]);
  p.dilation_w = param32("dilation", dilation[1]);
  p.pad_top = param32("padding", padding[0]);
  p.pad_left = param32("padding", padding[1]);
  p.groups = param32("groups", groups);
  p.tile = param32("tile", tile);
  p.act = static_cast<Activation>(param32("act", act));
  p.act_alpha = static_cast<float>(act_alpha);
  p.post_act = static_cast<Activation>(param32("post_act", post_act));
  // The checks shared with the TensorRT plugin and the kernels (passrt_kernels.h); the values
  // follow the message, since the header's messages are fixed strings.
  if (const char* error = checkSparseConv2d(p)) {
    TORCH_CHECK(false, kConv, ": ", error, "; got input ", input.sizes(), ", weight ", weight.sizes(), ", output ",
                output.sizes(), ", stride ", stride, ", padding (top, left) ", padding, ", dilation ", dilation,
                ", groups ", groups, ", tile ", tile, ", act ", act, ", post_act ", post_act);
  }

  // What only tensors show: shapes that must agree with one another, dtypes, aliasing.
  TORCH_CHECK(weight.size(1) == cin / groups, kConv, ": weight ", weight.sizes(), " expects ", weight.size(1) * groups,
              " input channels with groups=", groups, ", input has ", cin);
  TORCH_CHECK(output.size(0) == n && output.size(1) == cout, kConv, ": output ", output.sizes(), " must be [", n, ", ",
              cout, ", H_out, W_out] for input ", input.sizes(), " and weight ", weight.sizes());

  if (bias) {
    checkTensor(kConv, "bias", *bias, input, backend);
    TORCH_CHECK(bias->scalar_type() == dtype, kConv, ": bias has dtype ", bias->scalar_type(), ", input has ", dtype);
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == cout, kConv, ": bias must be [", cout, "], got ", bias->sizes());
    checkNoOverlap(kConv, "output", output, "bias", *bias);
  }
  if (residual) {
    checkTensor(kConv, "residual", *residual, input, backend);
    TORCH_CHECK(residual->scalar_type() == dtype, kConv, ": residual has dtype ", residual->scalar_type(),
                ", input has ", dtype);
    TORCH_CHECK(residual->sizes() == output.sizes(), kConv, ": residual ", residual->sizes(),
                " must have the output's shape ", output.sizes());
    // The kernels read each residual cell just before they write the same output cell, so the
    // residual may be the output itself, but not a shifted view of it.
    TORCH_CHECK(at::get_overlap_status(*residual, output) != at::MemOverlapStatus::Partial, kConv,
                ": residual partially overlaps output; pass the output itself or a separate tensor");
  }
  at::assert_no_internal_overlap(output);
  checkNoOverlap(kConv, "output", output, "input", input);
  checkNoOverlap(kConv, "output", output, "weight", weight);

  checkTensor(kConv, "tile_mask", tile_mask, input, backend);
  TORCH_CHECK(tile_mask.scalar_type() == at::kFloat, kConv, ": tile_mask must be float32 0/1, got ",
              tile_mask.scalar_type(), "; use tile_mask.float()");
  const std::vector<int64_t> grid{n, p.tilesH(), p.tilesW()};
  TORCH_CHECK(tile_mask.sizes() == at::IntArrayRef(grid), kConv, ": tile_mask must be [N, ceil(H_out / tile), ",
              "ceil(W_out / tile)] = ", at::IntArrayRef(grid), " for output ", output.sizes(), " and tile ", tile,
              ", got ", tile_mask.sizes());
  checkNoOverlap(kConv, "output", output, "tile_mask", tile_mask);
  return p;
}

DataType dataType(const at::Tensor& t) {
  return t.scalar_type() == at::kHalf ? DataType::kFloat16 : DataType::kFloat32;
}

}  // namespace passrt::op
