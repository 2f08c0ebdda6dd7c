// CPU kernels of passrt's PyTorch ops: checks (ops.cpp), then the float32 CPU twins of the
// CUDA kernels (kernels/cpu). Reference speed, not production speed: passrt's CPU
// engine runs the pure-PyTorch tile kernels instead.
#include <ATen/ops/empty.h>
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

at::Tensor changeMapCpuOp(const at::Tensor& x, at::Tensor& x_ref, double threshold, bool update_ref) {
  checkChangeMap(x, x_ref, kCpu);
  at::Tensor changed = at::empty({x.size(0), x.size(2), x.size(3)}, x.options().dtype(at::kFloat));
  if (changed.numel() == 0) return changed;
  changeMapCpu(x.data_ptr<float>(), x_ref.data_ptr<float>(), x.size(0), x.size(1), x.size(2), x.size(3),
               static_cast<float>(threshold), update_ref ? 1 : 0, changed.data_ptr<float>());
  return changed;
}

at::Tensor propagateWindowCpuOp(const at::Tensor& changed, at::IntArrayRef out_size, at::IntArrayRef kernel,
                                at::IntArrayRef stride, at::IntArrayRef dilation, at::IntArrayRef padding) {
  const WindowParams p = windowParams(changed, out_size, kernel, stride, dilation, padding, kCpu);
  at::Tensor out = at::empty(mapSizes(changed, p.out_h, p.out_w), changed.options());
  if (out.numel() == 0) return out;
  propagateWindowCpu(p, changed.data_ptr<float>(), out.data_ptr<float>());
  return out;
}

at::Tensor reduceToTilesCpuOp(const at::Tensor& changed, int64_t tile) {
  constexpr const char* op = "passrt::reduce_to_tiles";
  checkPositive(op, "tile", tile, 1);
  const MapShape s = checkMap(op, "changed", changed, kCpu);
  const int64_t th = (s.h + tile - 1) / tile, tw = (s.w + tile - 1) / tile;
  at::Tensor tiles = at::empty(mapSizes(changed, th, tw), changed.options());
  if (tiles.numel() == 0) return tiles;
  reduceToTilesCpu(changed.data_ptr<float>(), s.batch, s.h, s.w, static_cast<int32_t>(tile), tiles.data_ptr<float>());
  return tiles;
}

at::Tensor dilateTilesCpuOp(const at::Tensor& tiles, int64_t radius) {
  constexpr const char* op = "passrt::dilate_tiles";
  checkPositive(op, "radius", radius, 0);
  const MapShape s = checkMap(op, "tiles", tiles, kCpu);
  at::Tensor out = at::empty(tiles.sizes(), tiles.options());
  if (out.numel() == 0) return out;
  dilateTilesCpu(tiles.data_ptr<float>(), s.batch, s.h, s.w, static_cast<int32_t>(radius), out.data_ptr<float>());
  return out;
}

}  // namespace
}  // namespace passrt::op

TORCH_LIBRARY_IMPL(passrt, CPU, m) {
  m.impl("sparse_conv2d", &passrt::op::sparseConv2dCpuOp);
  m.impl("change_map", &passrt::op::changeMapCpuOp);
  m.impl("propagate_window", &passrt::op::propagateWindowCpuOp);
  m.impl("reduce_to_tiles", &passrt::op::reduceToTilesCpuOp);
  m.impl("dilate_tiles", &passrt::op::dilateTilesCpuOp);
}
