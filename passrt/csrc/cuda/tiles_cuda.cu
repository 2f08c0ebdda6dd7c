// passrt::conv_tiles and affine_tiles on CUDA: the native executor's steps (cpu/tiles_cpu.cpp) on the GPU, with the
// NHWC CUDA tile kernels (kernels/tiles_nhwc.cu). Same schema, same NHWC row caches and weight layouts;
// float32 or float16 storage (one dtype for input, weights, residuals and output; biases are used in
// float32), fp32 accumulation.
//
// tile ids -> the cell list on the device (tileCellsCuda: its length never comes back to the host)
// -> the conv (a GEMM over 64-cell blocks, tensor cores for fp16 on sm_70+, or the depthwise kernel)
// -> epilogue -> [compact rows -> the fused 1x1 -> its epilogue] -> the output cache. Nothing here
// synchronises: the scratch comes from PyTorch's caching allocator on the current stream (which CUDA
// graph capture supports), and every launch is sized by the tile count the host already knows.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <climits>
#include <optional>

#include "passrt_tiles.h"
#include "tiles_op.h"

namespace passrt::op {
namespace {

constexpr const char* kOp = "passrt::conv_tiles";

// `op` names the op in messages (conv_tiles by default, affine_tiles for its own checks).
// rows: a 2-D view of wider rows (unit channel stride) is enough (rowsLaidOut), else contiguous.
void checkCuda(const char* name, const at::Tensor& t, const at::Tensor& like, const char* op = kOp,
               bool rows = false) {
  TORCH_CHECK(t.device() == like.device() && t.scalar_type() == like.scalar_type() &&
                  (rows ? rowsLaidOut(t) : t.is_contiguous()),
              op, ": ", name, " must be a ", rows ? "row-strided" : "contiguous", " ", like.scalar_type(),
              " tensor on ", like.device(), ", got ", t.scalar_type(), " on ", t.device(), " strides ", t.strides());
}

// A row cache may be a view of wider rows (padded, or one group's channels) where `strided` (conv_tiles).
void checkRows(const char* name, const at::Tensor& t, const at::Tensor& like, int64_t cells, int64_t channels,
               const char* op = kOp, bool strided = true) {
  checkCuda(name, t, like, op, strided);
  TORCH_CHECK(t.dim() == 2 && t.size(0) >= cells && t.size(1) == channels, op, ": ", name, " must be [>= ", cells,
              ", ", channels, "] (NHWC rows), got ", t.sizes());
}

void checkMatrix(const char* name, const at::Tensor& t, const at::Tensor& like, int64_t rows, int64_t cols) {
  checkCuda(name, t, like);
  TORCH_CHECK(t.dim() == 2 && t.size(0) == rows && t.size(1) == cols, kOp, ": ", name, " must be [", rows, ", ", cols,
              "], got ", t.sizes());
}

// The bias in float32 (the kernels' epilogue type): no copy when it already is.
std::optional<at::Tensor> floatBias(const char* name, const std::optional<at::Tensor>& b, const at::Tensor& like,
                                    int64_t channels, const char* op = kOp) {
  if (!b) return std::nullopt;
  TORCH_CHECK(b->device() == like.device() && b->dim() == 1 && b->size(0) == channels && b->is_floating_point(), op,
              ": ", name, " must be a 1-D float tensor [", channels, "] on ", like.device(), ", got ", b->sizes());
  return b->to(at::kFloat).contiguous();
}

const float* ptr(const std::optional<at::Tensor>& t) { return t ? t->data_ptr<float>() : nullptr; }
const void* vptr(const std::optional<at::Tensor>& t) { return t ? t->data_ptr() : nullptr; }

void ok(cudaError_t e) { TORCH_CHECK(e == cudaSuccess, kOp, ": CUDA kernel launch failed: ", cudaGetErrorString(e)); }

void convTilesCuda(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                   const std::optional<at::Tensor>& residual, const at::Tensor& tiles, at::Tensor& output,
                   at::IntArrayRef in_size, at::IntArrayRef out_size, at::IntArrayRef kernel, at::IntArrayRef stride,
                   at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, int64_t tile, int64_t act,
                   double act_alpha, int64_t post_act, const std::optional<at::Tensor>& follow_weight,
                   const std::optional<at::Tensor>& follow_bias, const std::optional<at::Tensor>& follow_residual,
                   int64_t follow_act, double follow_alpha, int64_t follow_post_act) {
  TORCH_CHECK(input.scalar_type() == at::kFloat || input.scalar_type() == at::kHalf, kOp,
              ": input must be float32 or float16 on CUDA, got ", input.scalar_type());
  SparseConvParams p = convTilesParams(kOp, input, weight, in_size, out_size, kernel, stride, padding, dilation,
                                       groups, tile, act, act_alpha, post_act);
  const int64_t taps = (int64_t)p.kernel_h * p.kernel_w;
  const bool depthwise = isDepthwise(groups, p.in_channels, taps, weight);
  checkRows("input", input, input, (int64_t)p.in_h * p.in_w, p.in_channels);
  checkMatrix("weight", weight, input, depthwise ? taps : taps * p.in_channels,
              depthwise ? p.out_channels : p.out_channels / groups);
  TORCH_CHECK(groups == 1 || depthwise || !follow_weight, kOp, ": a fused 1x1 follows a groups-1 or depthwise conv, ",
              "not a grouped one (groups ", groups, ")");
  // Row strides: the conv writes the output unless a 1x1 follows (then it writes packed rows, the 1x1 the output).
  if (!follow_weight) p.out_stride = outStride(kOp, output, residual, "residual");
  if (follow_weight && residual) p.out_stride = outStride(kOp, *residual, std::nullopt, "residual");
  const auto b = floatBias("bias", bias, input, p.out_channels);
  const int64_t cOut = follow_weight ? follow_weight->size(1) : p.out_channels;
  const int64_t outCells = (int64_t)p.out_h * p.out_w;
  checkRows("output", output, input, outCells, cOut);
  if (residual) checkRows("residual", *residual, input, outCells, p.out_channels);
  std::optional<at::Tensor> fb;
  if (follow_weight) {
    checkMatrix("follow_weight", *follow_weight, input, p.out_channels, cOut);
    fb = floatBias("follow_bias", follow_bias, input, cOut);
    if (follow_residual) checkRows("follow_residual", *follow_residual, input, outCells, cOut);
  }
  TORCH_CHECK(tiles.dim() == 1 && tiles.scalar_type() == at::kLong && tiles.is_contiguous() &&
                  tiles.device() == input.device(),
              kOp, ": tiles must be a contiguous 1-D int64 tensor of tile ids on ", input.device());
  SparseConvParams q = p;  // the fused 1x1: same cells, its own epilogue
  q.in_channels = p.out_channels;
  q.out_channels = static_cast<int32_t>(cOut);
  q.in_h = p.out_h;
  q.in_w = p.out_w;
  q.kernel_h = q.kernel_w = q.stride_h = q.stride_w = q.dilation_h = q.dilation_w = q.groups = 1;
  q.pad_top = q.pad_left = 0;
  q.in_stride = 0;  // the packed rows the conv wrote
  if (follow_weight) q.out_stride = outStride(kOp, output, follow_residual, "follow_residual");
  q.act = static_cast<Activation>(follow_act);
  q.act_alpha = static_cast<float>(follow_alpha);
  q.post_act = static_cast<Activation>(follow_post_act);
  TORCH_CHECK(isActivation(q.act) && isActivation(q.post_act), kOp, ": follow_act/follow_post_act is not an ",
              "activation code");
  const int64_t capacity = tiles.numel() * p.tile * p.tile;
  if (capacity == 0) return;
  TORCH_CHECK(capacity <= INT32_MAX, kOp, ": too many cells for one call");

  const c10::cuda::CUDAGuard guard(input.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(input.device().index()).stream();
  const DataType dt = input.scalar_type() == at::kHalf ? DataType::kFloat16 : DataType::kFloat32;
  auto ints = input.options().dtype(at::kInt);
  at::Tensor cells = at::empty({capacity}, ints), count = at::empty({1}, ints);
  ok(tileCellsCuda(p.out_h, p.out_w, p.tile, tiles.data_ptr<int64_t>(), static_cast<int32_t>(tiles.numel()),
                   cells.data_ptr<int32_t>(), count.data_ptr<int32_t>(), stream));
  const CellRange range{cells.data_ptr<int32_t>(), count.data_ptr<int32_t>(), static_cast<int32_t>(capacity)};
  // Without a fused 1x1 the conv writes the cache; with one it writes compact rows the 1x1 reads.
  at::Tensor mid = follow_weight ? at::empty({capacity, p.out_channels}, input.options()) : output;
  const bool rows = follow_weight.has_value();
  if (depthwise) {
    ok(depthwiseCellsNhwcCuda(p, dt, input.data_ptr(), weight.data_ptr(), ptr(b), vptr(residual), range,
                              mid.data_ptr(), rows, stream));
  } else {
    ok(convCellsNhwcCuda(p, dt, input.data_ptr(), false, weight.data_ptr(), ptr(b), vptr(residual), range,
                         mid.data_ptr(), rows, stream));
  }
  if (!rows) return;
  ok(convCellsNhwcCuda(q, dt, mid.data_ptr(), true, follow_weight->data_ptr(), ptr(fb), vptr(follow_residual), range,
                       output.data_ptr(), false, stream));
}

// passrt::affine_tiles on CUDA (cpu/tiles_cpu.cpp's affineTilesCpu): output = input * scale + shift on the
// active tiles' cells; the tile list compacted on the device, ids outside the grid (-1) skipped.
void affineTilesCuda(const at::Tensor& input, const at::Tensor& scale, const at::Tensor& shift,
                     const at::Tensor& tiles, at::Tensor& output, at::IntArrayRef size, int64_t tile) {
  constexpr const char* kAffine = "passrt::affine_tiles";
  TORCH_CHECK(size.size() == 2 && size[0] >= 1 && size[1] >= 1 && tile >= 1, kAffine,
              ": size must be (height, width) and tile >= 1");
  TORCH_CHECK(input.scalar_type() == at::kFloat || input.scalar_type() == at::kHalf, kAffine,
              ": input must be float32 or float16 on CUDA, got ", input.scalar_type());
  const int64_t channels = input.dim() == 2 ? input.size(1) : 0;
  checkRows("input", input, input, size[0] * size[1], channels, kAffine, false);
  checkRows("output", output, input, size[0] * size[1], channels, kAffine, false);
  const auto s = floatBias("scale", scale, input, channels, kAffine), b = floatBias("shift", shift, input, channels,
                                                                                   kAffine);
  TORCH_CHECK(tiles.dim() == 1 && tiles.scalar_type() == at::kLong && tiles.is_contiguous() &&
                  tiles.device() == input.device(),
              kAffine, ": tiles must be a contiguous 1-D int64 tensor of tile ids on ", input.device());
  const int64_t capacity = tiles.numel() * tile * tile;
  if (capacity == 0 || channels == 0) return;
  TORCH_CHECK(capacity <= INT32_MAX, kAffine, ": too many cells for one call");
  const c10::cuda::CUDAGuard guard(input.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(input.device().index()).stream();
  auto ints = input.options().dtype(at::kInt);
  at::Tensor cells = at::empty({capacity}, ints), count = at::empty({1}, ints);
  ok(tileCellsCuda(static_cast<int32_t>(size[0]), static_cast<int32_t>(size[1]), static_cast<int32_t>(tile),
                   tiles.data_ptr<int64_t>(), static_cast<int32_t>(tiles.numel()), cells.data_ptr<int32_t>(),
                   count.data_ptr<int32_t>(), stream));
  const CellRange range{cells.data_ptr<int32_t>(), count.data_ptr<int32_t>(), static_cast<int32_t>(capacity)};
  ok(affineCellsNhwcCuda(static_cast<int32_t>(channels),
                         input.scalar_type() == at::kHalf ? DataType::kFloat16 : DataType::kFloat32, input.data_ptr(),
                         ptr(s), ptr(b), range, output.data_ptr(), stream));
}

}  // namespace
}  // namespace passrt::op

TORCH_LIBRARY_IMPL(passrt, CUDA, m) {
  m.impl("conv_tiles", &passrt::op::convTilesCuda);
  m.impl("affine_tiles", &passrt::op::affineTilesCuda);
}
