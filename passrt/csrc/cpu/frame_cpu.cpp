// passrt's change tests on CPU, eager path (RegionDrop's and exact's per-frame rules, layerwise's per-layer
// test): the kernels of passrt_tiles.h over (1, C, H, W) float32 frames of any strides or NHWC row caches,
// split over threads.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <vector>

#include "passrt_tiles.h"

namespace passrt::op {
namespace {

constexpr const char* kOp = "passrt frame ops";

FrameView view(const char* name, const at::Tensor& t, const at::Tensor& like) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.dim() == 4 && t.size(0) == 1, kOp, ": ",
              name, " must be a float32 CPU tensor (1, C, H, W), got ", t.scalar_type(), " ", t.sizes());
  TORCH_CHECK(t.sizes() == like.sizes(), kOp, ": ", name, " has shape ", t.sizes(), ", expected ", like.sizes());
  return FrameView{t.data_ptr<float>(), t.stride(1), t.stride(2), t.stride(3)};
}

void checkBlock(int64_t block) { TORCH_CHECK(block >= 1, kOp, ": block must be >= 1, got ", block); }

at::Tensor blockRankChangeCpu(const at::Tensor& a, at::TensorList others, int64_t block, int64_t rank) {
  checkBlock(block);
  TORCH_CHECK(rank >= 1, kOp, ": rank must be >= 1, got ", rank);
  TORCH_CHECK(!others.empty(), kOp, ": at least one frame to compare with");
  const FrameView va = view("a", a, a);
  std::vector<FrameView> vs;
  for (const at::Tensor& b : others) vs.push_back(view("other", b, a));
  const int64_t h = a.size(2), w = a.size(3);
  TORCH_CHECK(h >= block && w >= block, kOp, ": the frame (", h, "x", w, ") is smaller than a block (", block, ")");
  const int64_t rows = (h - block) / (2 * block) + 1, cols = (w - block) / (2 * block) + 1;
  at::Tensor out = at::empty({static_cast<int64_t>(vs.size()), rows * cols}, a.options());
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    blockRankChange(static_cast<int32_t>(a.size(1)), static_cast<int32_t>(block), static_cast<int32_t>(rank), cols,
                    va, vs.data(), static_cast<int32_t>(vs.size()), rows * cols, begin, end, out.data_ptr<float>());
  });
  return out;
}

at::Tensor blockChangeCountsCpu(const at::Tensor& a, const at::Tensor& b, double limit, int64_t block) {
  checkBlock(block);
  const FrameView va = view("a", a, a), vb = view("b", b, a);
  const int64_t h = a.size(2), w = a.size(3), bh = (h + block - 1) / block, bw = (w + block - 1) / block;
  at::Tensor counts = at::empty({1, 1, bh, bw}, a.options());
  at::parallel_for(0, bh, 1, [&](int64_t begin, int64_t end) {
    blockChangeCounts(static_cast<int32_t>(a.size(1)), static_cast<int32_t>(h), static_cast<int32_t>(w),
                      static_cast<int32_t>(block), static_cast<float>(limit), va, vb, begin, end,
                      counts.data_ptr<float>());
  });
  return counts;
}

at::Tensor blockFeaturesCpu(const at::Tensor& a, const at::Tensor& b, at::ArrayRef<double> limits, int64_t block) {
  checkBlock(block);
  const FrameView va = view("a", a, a), vb = view("b", b, a);
  const int64_t h = a.size(2), w = a.size(3), bh = (h + block - 1) / block, bw = (w + block - 1) / block;
  const std::vector<float> lim(limits.begin(), limits.end());
  const int64_t count = static_cast<int64_t>(lim.size());
  at::Tensor out = at::empty({1, count + 2 + 2 * a.size(1), bh, bw}, a.options());
  at::parallel_for(0, bh, 1, [&](int64_t begin, int64_t end) {
    blockFeatures(static_cast<int32_t>(a.size(1)), static_cast<int32_t>(h), static_cast<int32_t>(w),
                  static_cast<int32_t>(block), lim.data(), static_cast<int32_t>(count), va, vb, begin, end,
                  out.data_ptr<float>());
  });
  return out;
}

at::Tensor pixelChangesCpu(at::Tensor& ref, const at::Tensor& a, double limit) {
  const FrameView va = view("a", a, a), vr = view("ref", ref, a);
  TORCH_CHECK(!ref.is_same(a), kOp, ": ref must be another tensor than a");
  const int64_t h = a.size(2), w = a.size(3);
  at::Tensor changed = at::empty({1, 1, h, w}, a.options());
  at::parallel_for(0, h, 8, [&](int64_t begin, int64_t end) {
    pixelChanges(static_cast<int32_t>(a.size(1)), static_cast<int32_t>(w), static_cast<float>(limit), va, vr, begin,
                 end, changed.data_ptr<float>());
  });
  return changed;
}

at::Tensor rowChangesCpu(at::Tensor& ref, const at::Tensor& src, const at::Tensor& rows, double threshold,
                         int64_t cells) {
  for (const at::Tensor* t : {static_cast<const at::Tensor*>(&ref), &src})
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == at::kFloat && t->is_contiguous() && t->dim() == 2, kOp,
                ": src and ref must be contiguous float32 CPU row caches [cells, C], got ", t->sizes());
  TORCH_CHECK(ref.sizes() == src.sizes() && !ref.is_same(src), kOp, ": ref must be another tensor of src's shape ",
              src.sizes(), ", got ", ref.sizes());
  TORCH_CHECK(rows.dim() == 1 && rows.scalar_type() == at::kLong && rows.is_contiguous(), kOp,
              ": rows must be a contiguous 1-D int64 tensor");
  TORCH_CHECK(cells >= 0 && cells <= src.size(0), kOp, ": cells must be in 0 .. ", src.size(0), ", got ", cells);
  const int64_t n = rows.numel();
  const int64_t* r = rows.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) TORCH_CHECK(r[i] >= 0 && r[i] < cells, kOp, ": row ", r[i], " is not a cell");
  at::Tensor own = at::zeros({cells}, src.options());
  const int32_t channels = static_cast<int32_t>(src.size(1));
  at::parallel_for(0, n, std::max<int64_t>(1, (1 << 14) / std::max<int32_t>(1, channels)), [&](int64_t b, int64_t e) {
    rowChanges(channels, static_cast<float>(threshold), src.data_ptr<float>(), ref.data_ptr<float>(), r, b, e,
               own.data_ptr<float>());
  });
  return own;
}

void copyBlocksCpu(at::Tensor& dst, const at::Tensor& src, const at::Tensor& mask, int64_t block) {
  checkBlock(block);
  const FrameView vs = view("src", src, src), vd = view("dst", dst, src);
  const int64_t h = src.size(2), w = src.size(3), bh = (h + block - 1) / block, bw = (w + block - 1) / block;
  TORCH_CHECK(mask.device().is_cpu() && mask.scalar_type() == at::kFloat && mask.is_contiguous() &&
                  mask.numel() == bh * bw,
              kOp, ": mask must be a contiguous float32 CPU tensor of ", bh, "x", bw, " blocks, got ", mask.sizes());
  at::parallel_for(0, bh, 1, [&](int64_t begin, int64_t end) {
    copyBlocks(static_cast<int32_t>(src.size(1)), static_cast<int32_t>(h), static_cast<int32_t>(w),
               static_cast<int32_t>(block), mask.data_ptr<float>(), vs, vd, begin, end);
  });
}

}  // namespace
}  // namespace passrt::op

TORCH_LIBRARY_IMPL(passrt, CPU, m) {
  m.impl("frame_block_rank_change", &passrt::op::blockRankChangeCpu);
  m.impl("frame_block_counts", &passrt::op::blockChangeCountsCpu);
  m.impl("frame_block_features", &passrt::op::blockFeaturesCpu);
  m.impl("frame_copy_blocks_", &passrt::op::copyBlocksCpu);
  m.impl("frame_pixel_changes_", &passrt::op::pixelChangesCpu);
  m.impl("row_changes_", &passrt::op::rowChangesCpu);
}
