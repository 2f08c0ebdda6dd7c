// passrt::conv_tiles on CPU: one step of the native executor (passrt/engine/native.py) in one call;
// passrt::affine_tiles; and TileProgram, a run of such steps in one call.
//
// A conv on the active tiles of NHWC row caches, its fused epilogue, and optionally a fused 1x1
// conv after it (MobileNetV2's depthwise -> projection), written straight into the output cache:
// cells of the active tiles -> windows gathered (or a depthwise conv computed) from the input
// cache -> one GEMM (ATen: oneDNN/MKL, multi-threaded) -> epilogue -> [GEMM -> epilogue] -> the
// output cache. The kernels are passrt_tiles.h's, split over threads here with at::parallel_for.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/custom_class.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <limits>
#include <optional>
#include <variant>
#include <vector>

#include "passrt_tiles.h"
#include "tiles_op.h"

namespace passrt::op {
namespace {

constexpr const char* kOp = "passrt::conv_tiles";
// Values (cells x channels) per task: a parallel region costs microseconds (more on a busy
// machine, where a thread may wait for a descheduled peer), so small layers run on one thread.
constexpr int64_t kGrainValues = 1 << 14;

// A row cache [>= cells, C], or `batch` streams' caches stacked [batch, >= cells, C] (batched execution
// across streams, passrt/engine/batched.py).
// A 2-D cache may be a view of wider rows (padded, or one group's channels): rows_laid_out.
void checkRows(const char* name, const at::Tensor& t, int64_t cells, int64_t channels, int64_t batch = 0) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && rowsLaidOut(t), kOp, ": ", name,
              " must be a float32 CPU tensor, contiguous or rows of unit-stride channels");
  if (batch == 0) {
    TORCH_CHECK(t.dim() == 2 && t.size(0) >= cells && t.size(1) == channels, kOp, ": ", name, " must be [>= ", cells,
                ", ", channels, "] (NHWC rows), got ", t.sizes());
  } else {
    TORCH_CHECK(t.dim() == 3 && t.size(0) == batch && t.size(1) >= cells && t.size(2) == channels, kOp, ": ", name,
                " must be [", batch, ", >= ", cells, ", ", channels, "] (", batch, " streams' NHWC rows), got ",
                t.sizes());
  }
}

// Stacked caches as the kernels take them: all streams' rows as one [N * rows, C] array (a view), each
// stream's block `rows` long (0: one unstacked cache, batch 0).
struct Rows {
  at::Tensor flat;
  int64_t batch, rows;
};

Rows rowsOf(const char* op, const char* name, const at::Tensor& t) {
  if (t.dim() != 3) return {t, 0, 0};
  TORCH_CHECK(t.is_contiguous(), op, ": ", name, " must be contiguous");
  TORCH_CHECK(t.size(0) * t.size(1) <= std::numeric_limits<int32_t>::max(), op, ": ", name, " ", t.sizes(),
              " has more rows than the kernels' 32-bit cell ids reach");
  return {t.view({-1, t.size(2)}), t.size(0), t.size(1)};
}

void checkMatrix(const char* name, const at::Tensor& t, int64_t rows, int64_t cols) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == at::kFloat && t.is_contiguous(), kOp, ": ", name,
              " must be a contiguous float32 CPU tensor");
  TORCH_CHECK(t.dim() == 2 && t.size(0) == rows && t.size(1) == cols, kOp, ": ", name, " must be [", rows, ", ", cols,
              "], got ", t.sizes());
}

void checkBias(const char* name, const std::optional<at::Tensor>& b, int64_t channels) {
  if (!b) return;
  TORCH_CHECK(b->device().is_cpu() && b->scalar_type() == at::kFloat && b->is_contiguous() && b->dim() == 1 &&
                  b->size(0) == channels,
              kOp, ": ", name, " must be a contiguous float32 CPU tensor [", channels, "], got ", b->sizes());
}

// Per-call buffers (cells, windows, the intermediate and the 1x1's result) reused across calls and
// frames: allocating them anew would return several MB to the system and fault them back in on every
// layer of every frame (glibc serves large blocks with mmap), a cost that grows with the active area.
// The memory is plain (not a tensor) and wrapped for each call, so the wrapper belongs to the caller's
// autograd mode (a tensor made under torch.inference_mode may not be written outside it, and back).
enum Slot { kCells, kCols, kMid, kOut, kSlots };

at::Tensor scratch(Slot slot, int64_t rows, int64_t cols, at::ScalarType dtype) {
  static_assert(sizeof(float) == sizeof(int32_t), "one buffer type serves float and int32 slots");
  static thread_local std::array<std::vector<float>, kSlots> buffers;
  std::vector<float>& b = buffers[slot];
  const size_t need = static_cast<size_t>(std::max<int64_t>(rows * cols, 1));
  if (b.size() < need) b.resize(need + need / 4);  // headroom: fewer regrowths
  return at::from_blob(b.data(), {rows, cols}, at::TensorOptions().dtype(dtype));
}

template <typename F>
void inParallel(int64_t n, int64_t channels, const F& f) {
  at::parallel_for(0, n, std::max<int64_t>(1, kGrainValues / std::max<int64_t>(1, channels)), f);
}

void convTilesCpu(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                  const std::optional<at::Tensor>& residual, const at::Tensor& tiles, at::Tensor& output,
                  at::IntArrayRef in_size, at::IntArrayRef out_size, at::IntArrayRef kernel, at::IntArrayRef stride,
                  at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups, int64_t tile, int64_t act,
                  double act_alpha, int64_t post_act, const std::optional<at::Tensor>& follow_weight,
                  const std::optional<at::Tensor>& follow_bias, const std::optional<at::Tensor>& follow_residual,
                  int64_t follow_act, double follow_alpha, int64_t follow_post_act) {
  // Stacked caches ([N, rows, C]): N streams in one call; their cells' ids run across the streams.
  const Rows in = rowsOf(kOp, "input", input), outRows = rowsOf(kOp, "output", output);
  const int64_t batch = in.batch;
  SparseConvParams p = convTilesParams(kOp, in.flat, weight, in_size, out_size, kernel, stride, padding, dilation,
                                       groups, tile, act, act_alpha, post_act);
  const int64_t taps = (int64_t)p.kernel_h * p.kernel_w;
  const bool depthwise = isDepthwise(groups, p.in_channels, taps, weight);
  checkRows("input", input, (int64_t)p.in_h * p.in_w, p.in_channels, batch);
  checkMatrix("weight", weight, depthwise ? taps : taps * p.in_channels,
              depthwise ? p.out_channels : p.out_channels / groups);
  TORCH_CHECK(groups == 1 || depthwise || !follow_weight, kOp, ": a fused 1x1 follows a groups-1 or depthwise conv, ",
              "not a grouped one (groups ", groups, ")");
  // Row strides: the first conv's epilogue writes the output unless a 1x1 follows (then the 1x1 does).
  if (!follow_weight) p.out_stride = outStride(kOp, output, residual, "residual");
  if (follow_weight && residual) p.out_stride = outStride(kOp, *residual, std::nullopt, "residual");
  checkBias("bias", bias, p.out_channels);
  const int64_t cOut = follow_weight ? follow_weight->size(1) : p.out_channels;
  const int64_t outCells = (int64_t)p.out_h * p.out_w;
  checkRows("output", output, outCells, cOut, batch);
  // A residual is read at the output's cell ids: stacked, its blocks must be as long as the output's.
  auto checkResidual = [&](const char* name, const at::Tensor& r, int64_t channels) {
    checkRows(name, r, outCells, channels, batch);
    TORCH_CHECK(batch == 0 || r.size(1) == output.size(1), kOp, ": ", name, " must have the output's ",
                output.size(1), " rows per stream, got ", r.sizes());
  };
  if (residual) checkResidual("residual", *residual, p.out_channels);
  if (follow_weight) {
    checkMatrix("follow_weight", *follow_weight, p.out_channels, cOut);
    checkBias("follow_bias", follow_bias, cOut);
    if (follow_residual) checkResidual("follow_residual", *follow_residual, cOut);
  }
  TORCH_CHECK(tiles.dim() == 1 && tiles.scalar_type() == at::kLong && tiles.is_contiguous(), kOp,
              ": tiles must be a contiguous 1-D int64 tensor of tile ids");
  at::Tensor cellsT = scratch(kCells, tiles.numel() * p.tile * p.tile, 1, at::kInt);
  const int32_t* cells = cellsT.data_ptr<int32_t>();
  const int64_t streams = std::max<int64_t>(batch, 1);
  const int64_t n = tileCells(p.out_h, p.out_w, p.tile, tiles.data_ptr<int64_t>(), tiles.numel(),
                              cellsT.data_ptr<int32_t>(), static_cast<int32_t>(streams), outRows.rows);
  TORCH_CHECK(n >= 0, kOp, ": tile ids must be in 0 .. ", (int64_t)p.tilesH() * p.tilesW() * streams - 1);
  if (n == 0) return;
  float* out = output.data_ptr<float>();
  const float* res = residual ? residual->data_ptr<float>() : nullptr;
  float* first = follow_weight ? nullptr : out;  // where the first conv's epilogue writes (null: stays in mid)

  at::Tensor mid;
  if (depthwise) {
    mid = scratch(kMid, n, p.out_channels, at::kFloat);
    const float* b = bias ? bias->data_ptr<float>() : nullptr;
    inParallel(n, p.out_channels * taps, [&](int64_t begin, int64_t end) {
      depthwiseNhwc(p, input.data_ptr<float>(), weight.data_ptr<float>(), b, cells, begin, end,
                    mid.data_ptr<float>(), in.rows, outRows.rows);
      epilogueNhwc(p, p.out_channels, mid.data_ptr<float>(), nullptr, res, cells, begin, end, first);
    });
  } else {
    // A grouped conv is one groups-1 conv per group over its channel slice of the rows (groupSlice).
    const SparseConvParams g1 = groupSlice(p);
    const int64_t k = taps * g1.in_channels;
    const at::Tensor w = weight.view({groups, k, g1.out_channels});
    for (int64_t g = 0; g < groups; ++g) {
      at::Tensor cols = scratch(kCols, n, k, at::kFloat);
      const float* inG = input.data_ptr<float>() + g * g1.in_channels;
      inParallel(n, k, [&](int64_t begin, int64_t end) {
        gatherWindowsNhwc(g1, inG, cells, begin, end, cols.data_ptr<float>(), in.rows, outRows.rows);
      });
      mid = scratch(kMid, n, g1.out_channels, at::kFloat);
      at::mm_out(mid, cols, w[g]);  // the bias is the epilogue's
      const int64_t off = g * g1.out_channels;
      const float* b = bias ? bias->data_ptr<float>() + off : nullptr;
      inParallel(n, g1.out_channels, [&](int64_t begin, int64_t end) {
        epilogueNhwc(g1, g1.out_channels, mid.data_ptr<float>(), b, res ? res + off : nullptr, cells, begin, end,
                     first ? first + off : nullptr);
      });
    }
  }
  if (!follow_weight) return;
  SparseConvParams q = p;  // the fused 1x1: same cells, its own epilogue, writes the output
  q.out_stride = outStride(kOp, output, follow_residual, "follow_residual");
  q.act = static_cast<Activation>(follow_act);
  q.act_alpha = static_cast<float>(follow_alpha);
  q.post_act = static_cast<Activation>(follow_post_act);
  TORCH_CHECK(isActivation(q.act) && isActivation(q.post_act), kOp, ": follow_act/follow_post_act is not an ",
              "activation code");
  at::Tensor y = scratch(kOut, n, cOut, at::kFloat);
  at::mm_out(y, mid, *follow_weight);
  const float* fres = follow_residual ? follow_residual->data_ptr<float>() : nullptr;
  const float* fb = follow_bias ? follow_bias->data_ptr<float>() : nullptr;
  inParallel(n, cOut, [&](int64_t begin, int64_t end) {
    epilogueNhwc(q, static_cast<int32_t>(cOut), y.data_ptr<float>(), fb, fres, cells, begin, end, out);
  });
}

void affineTilesCpu(const at::Tensor& input, const at::Tensor& scale, const at::Tensor& shift, const at::Tensor& tiles,
                    at::Tensor& output, at::IntArrayRef size, int64_t tile) {
  constexpr const char* kAffine = "passrt::affine_tiles";
  TORCH_CHECK(size.size() == 2 && tile >= 1, kAffine, ": size must be (height, width) and tile >= 1");
  const int64_t channels = input.dim() >= 2 ? input.size(-1) : 0, cells = size[0] * size[1];
  const Rows in = rowsOf(kAffine, "input", input);  // stacked: input and output index the same cell ids
  checkRows("input", input, cells, channels, in.batch);
  checkRows("output", output, cells, channels, in.batch);
  TORCH_CHECK(input.is_contiguous() && output.is_contiguous(), kAffine, ": input and output must be contiguous");
  TORCH_CHECK(in.batch == 0 || output.size(1) == input.size(1), kAffine, ": stacked input and output must have ",
              "the same rows per stream, got ", input.sizes(), " and ", output.sizes());
  checkBias("scale", scale, channels);
  checkBias("shift", shift, channels);
  TORCH_CHECK(tiles.dim() == 1 && tiles.scalar_type() == at::kLong && tiles.is_contiguous(), kAffine,
              ": tiles must be a contiguous 1-D int64 tensor of tile ids");
  at::Tensor cellsT = scratch(kCells, tiles.numel() * tile * tile, 1, at::kInt);
  const int64_t n = tileCells(static_cast<int32_t>(size[0]), static_cast<int32_t>(size[1]), static_cast<int32_t>(tile),
                              tiles.data_ptr<int64_t>(), tiles.numel(), cellsT.data_ptr<int32_t>(),
                              static_cast<int32_t>(std::max<int64_t>(in.batch, 1)), in.rows);
  TORCH_CHECK(n >= 0, kAffine, ": a tile id is outside the ", size, " map's grid of ", tile, "x", tile, " tiles");
  inParallel(n, channels, [&](int64_t begin, int64_t end) {
    affineNhwc(static_cast<int32_t>(channels), input.data_ptr<float>(), scale.data_ptr<float>(),
               shift.data_ptr<float>(), cellsT.data_ptr<int32_t>(), begin, end, output.data_ptr<float>());
  });
}

// A run of native steps (convs and affine maps, in plan order) recorded once per plan with their
// caches and weights, then run per frame in one call: the native executor's whole-plan path for the
// policies whose tiles are known before the first step runs (one mask per grid: regiondrop). Per frame
// only the tile ids of each step cross from Python; an empty list skips the step.
struct ConvCall {
  at::Tensor input, weight, output;
  std::optional<at::Tensor> bias, residual, follow_weight, follow_bias, follow_residual;
  std::vector<int64_t> in_size, out_size, kernel, stride, padding, dilation;
  int64_t groups, tile, act, post_act, follow_act, follow_post_act;
  double act_alpha, follow_alpha;
};

struct AffineCall {
  at::Tensor input, scale, shift, output;
  std::vector<int64_t> size;
  int64_t tile;
};

class TileProgram : public torch::CustomClassHolder {
 public:
  void addConv(at::Tensor input, at::Tensor weight, std::optional<at::Tensor> bias,
               std::optional<at::Tensor> residual, at::Tensor output, std::vector<int64_t> geometry, int64_t groups,
               int64_t tile, int64_t act, double act_alpha, int64_t post_act,
               std::optional<at::Tensor> follow_weight, std::optional<at::Tensor> follow_bias,
               std::optional<at::Tensor> follow_residual, int64_t follow_act, double follow_alpha,
               int64_t follow_post_act) {
    TORCH_CHECK(geometry.size() == 12, "TileProgram.add_conv: geometry must be 12 values (in, out, kernel, ",
                "stride, padding, dilation; height and width each), got ", geometry.size());
    auto pair = [&](int i) { return std::vector<int64_t>{geometry[2 * i], geometry[2 * i + 1]}; };
    steps_.push_back(ConvCall{input, weight, output, bias, residual, follow_weight, follow_bias, follow_residual,
                              pair(0), pair(1), pair(2), pair(3), pair(4), pair(5), groups, tile, act, post_act,
                              follow_act, follow_post_act, act_alpha, follow_alpha});
  }

  void addAffine(at::Tensor input, at::Tensor scale, at::Tensor shift, at::Tensor output, std::vector<int64_t> size,
                 int64_t tile) {
    steps_.push_back(AffineCall{input, scale, shift, output, std::move(size), tile});
  }

  int64_t size() const { return static_cast<int64_t>(steps_.size()); }

  void run(const std::vector<at::Tensor>& tiles) {
    TORCH_CHECK(tiles.size() == steps_.size(), "TileProgram.run: ", steps_.size(), " steps but tile ids for ",
                tiles.size());
    for (size_t i = 0; i < steps_.size(); ++i) {
      if (tiles[i].numel() == 0) continue;
      if (const auto* c = std::get_if<ConvCall>(&steps_[i])) {
        at::Tensor out = c->output;
        convTilesCpu(c->input, c->weight, c->bias, c->residual, tiles[i], out, c->in_size, c->out_size, c->kernel,
                     c->stride, c->padding, c->dilation, c->groups, c->tile, c->act, c->act_alpha, c->post_act,
                     c->follow_weight, c->follow_bias, c->follow_residual, c->follow_act, c->follow_alpha,
                     c->follow_post_act);
      } else {
        const auto& a = std::get<AffineCall>(steps_[i]);
        at::Tensor out = a.output;
        affineTilesCpu(a.input, a.scale, a.shift, tiles[i], out, a.size, a.tile);
      }
    }
  }

 private:
  std::vector<std::variant<ConvCall, AffineCall>> steps_;
};

}  // namespace
}  // namespace passrt::op

TORCH_LIBRARY_FRAGMENT(passrt, m) {
  m.class_<passrt::op::TileProgram>("TileProgram")
      .def(torch::init<>())
      .def("add_conv", &passrt::op::TileProgram::addConv)
      .def("add_affine", &passrt::op::TileProgram::addAffine)
      .def("size", &passrt::op::TileProgram::size)
      .def("run", &passrt::op::TileProgram::run);
}

TORCH_LIBRARY_IMPL(passrt, CPU, m) {
  m.impl("conv_tiles", &passrt::op::convTilesCpu);
  m.impl("affine_tiles", &passrt::op::affineTilesCpu);
}
