// CUDA kernels of passrt's PyTorch ops: checks (ops.cpp), then the framework-free CUDA API
// (kernels/) on PyTorch's current stream of the input's device. Nothing here
// synchronises: errors are launch errors (cudaGetLastError), reported as Python exceptions.
//
// c10/cuda/CUDAStream.h instead of ATen/cuda/CUDAContext.h: the same current stream
// (at::cuda::getCurrentCUDAStream is c10::cuda's), without CUDAContext.h's cuBLAS, cuSPARSE
// and cuSOLVER headers, which a CUDA toolkit without those libraries lacks.
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <optional>

#include "ops.h"

namespace passrt::op {
namespace {

constexpr Backend kCuda{c10::DeviceType::CUDA, /*half=*/true};

const void* ptrOrNull(const std::optional<at::Tensor>& t) { return t ? t->data_ptr() : nullptr; }

void check(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

cudaStream_t streamOf(const at::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

void sparseConv2dCudaOp(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        const std::optional<at::Tensor>& residual, const at::Tensor& tile_mask, at::Tensor& output,
                        at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                        int64_t tile, int64_t act, double act_alpha, int64_t post_act) {
  const SparseConvParams p = sparseConvParams(input, weight, bias, residual, tile_mask, output, stride, padding,
                                              dilation, groups, tile, act, act_alpha, post_act, kCuda);
  if (output.numel() == 0) return;
  const c10::cuda::CUDAGuard guard(input.device());
  check(sparseConv2d(p, dataType(input), input.data_ptr(), weight.data_ptr(), ptrOrNull(bias), ptrOrNull(residual),
                     tile_mask.data_ptr<float>(), output.data_ptr(), streamOf(input)),
        "passrt::sparse_conv2d");
}

at::Tensor changeMapCudaOp(const at::Tensor& x, at::Tensor& x_ref, double threshold, bool update_ref) {
  checkChangeMap(x, x_ref, kCuda);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor changed = at::empty({x.size(0), x.size(2), x.size(3)}, x.options().dtype(at::kFloat));
  if (changed.numel() == 0) return changed;
  check(changeMap(dataType(x), x.data_ptr(), x_ref.data_ptr(), x.size(0), x.size(1), x.size(2), x.size(3),
                  static_cast<float>(threshold), update_ref ? 1 : 0, changed.data_ptr<float>(), streamOf(x)),
        "passrt::change_map");
  return changed;
}

at::Tensor propagateWindowCudaOp(const at::Tensor& changed, at::IntArrayRef out_size, at::IntArrayRef kernel,
                                 at::IntArrayRef stride, at::IntArrayRef dilation, at::IntArrayRef padding) {
  const WindowParams p = windowParams(changed, out_size, kernel, stride, dilation, padding, kCuda);
  const c10::cuda::CUDAGuard guard(changed.device());
  at::Tensor out = at::empty(mapSizes(changed, p.out_h, p.out_w), changed.options());
  if (out.numel() == 0) return out;
  check(propagateWindow(p, changed.data_ptr<float>(), out.data_ptr<float>(), streamOf(changed)),
        "passrt::propagate_window");
  return out;
}

at::Tensor reduceToTilesCudaOp(const at::Tensor& changed, int64_t tile) {
  constexpr const char* op = "passrt::reduce_to_tiles";
  checkPositive(op, "tile", tile, 1);
  const MapShape s = checkMap(op, "changed", changed, kCuda);
  const c10::cuda::CUDAGuard guard(changed.device());
  const int64_t th = (s.h + tile - 1) / tile, tw = (s.w + tile - 1) / tile;
  at::Tensor tiles = at::empty(mapSizes(changed, th, tw), changed.options());
  if (tiles.numel() == 0) return tiles;
  check(reduceToTiles(changed.data_ptr<float>(), s.batch, s.h, s.w, static_cast<int32_t>(tile),
                      tiles.data_ptr<float>(), streamOf(changed)),
        op);
  return tiles;
}

at::Tensor dilateTilesCudaOp(const at::Tensor& tiles, int64_t radius) {
  constexpr const char* op = "passrt::dilate_tiles";
  checkPositive(op, "radius", radius, 0);
  const MapShape s = checkMap(op, "tiles", tiles, kCuda);
  const c10::cuda::CUDAGuard guard(tiles.device());
  at::Tensor out = at::empty(tiles.sizes(), tiles.options());
  if (out.numel() == 0) return out;
  check(dilateTiles(tiles.data_ptr<float>(), s.batch, s.h, s.w, static_cast<int32_t>(radius), out.data_ptr<float>(),
                    streamOf(tiles)),
        op);
  return out;
}

}  // namespace
}  // namespace passrt::op

TORCH_LIBRARY_IMPL(passrt, CUDA, m) {
  m.impl("sparse_conv2d", &passrt::op::sparseConv2dCudaOp);
  m.impl("change_map", &passrt::op::changeMapCudaOp);
  m.impl("propagate_window", &passrt::op::propagateWindowCudaOp);
  m.impl("reduce_to_tiles", &passrt::op::reduceToTilesCudaOp);
  m.impl("dilate_tiles", &passrt::op::dilateTilesCudaOp);
}
