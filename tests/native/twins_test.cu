// Standalone test of the NHWC tile kernels: no torch, no TensorRT.
//
//   twins_test [--cpu-only] [--quick] [--time] [--json FILE]
//
// 1. CPU side (runs anywhere): the CPU twins (passrt_tiles.h: tileCells, gatherWindowsNhwc + a GEMM,
//    depthwiseNhwc, epilogueNhwc) against a direct NHWC convolution written here, over the matrix
//    below. This checks the twins' composition, which is the CUDA kernels' reference. Some cases store
//    their maps as TensorRT's fp16 kHWC8 does (rows of C rounded up to 8: in_stride / out_stride; the
//    padding holds NaN in the input and a sentinel in the output, which must survive), and some are
//    grouped convs (one groups-1 conv per channel slice, groupSlice).
// 2. GPU side (where a CUDA device is): every CUDA kernel (activeCellsCuda, tileCellsCuda, convCellsNhwcCuda,
//    depthwiseCellsNhwcCuda) against its CPU twin over shapes x tiles x masks x dtypes x residual
//    (none / separate / aliased to the output) x the fused depthwise -> 1x1 pair: cell lists equal,
//    active cells within a tolerance per dtype (never averaged), inactive cells bit-exact; then
//    affineCellsNhwcCuda against affineNhwc (in place too), and kernelLayoutCuda (the TensorRT plugin's
//    weight preparation) against OIHW laid out here, bit for bit.
// 3. --time (GPU): every SSDLite conv step at 576x768 at 0 / 15 / 100 % active tiles, fp16, CUDA
//    events, median of 20 runs; the compaction is included. The dense reference (cuDNN) is timed by
//    `passrt bench --device cuda --half` in benchmarks/gpu_check.sh, not here (no torch, no cuDNN link).
//
// Exit status: 0 all ran and passed; 1 a check failed; 77 the CPU side passed and there is no GPU
// (with PASSRT_REQUIRE_GPU=1 that is 1: a GPU job must not pass by skipping).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "conv_cell.h"
#include "passrt_tiles.h"
#include "ssdlite_layers.h"

using passrt::Activation;
using passrt::DataType;
using passrt::SparseConvParams;

namespace {

int failures = 0;
bool quick = false;  // --quick: a small part of the GPU matrix (compute-sanitizer runs it)
#define EXPECT(cond, ...)                             \
  do {                                                \
    if (!(cond)) {                                    \
      ++failures;                                     \
      if (failures <= 20) {                           \
        std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
        std::fprintf(stderr, __VA_ARGS__);            \
        std::fprintf(stderr, "\n");                   \
      }                                               \
    }                                                 \
  } while (0)

// One conv of the matrix: TF-SAME geometry (asymmetric padding when it must be).
struct Case {
  int c_in, c_out, h, w, k, s, dw;  // dw: depthwise (c_out == c_in)
  int fuse;                         // > 0: a 1x1 to this many channels after the depthwise conv (rows)
  int g;                            // > 1: a grouped conv (not depthwise) of g groups
  bool hwc8;                        // maps in kHWC8 rows: C rounded up to 8 (in_stride / out_stride)
};

int groupsOf(const Case& c) { return c.dw ? c.c_in : (c.g > 1 ? c.g : 1); }
int rowStride(const Case& c, int channels) { return c.hwc8 ? (channels + 7) / 8 * 8 : channels; }
const float kSentinel = -7.5f;  // the output rows' padding: exact in fp16, never a result by chance

// A packed [rows, channels] map spread to rows `stride` apart, the padding filled with `fill`.
std::vector<float> spread(const std::vector<float>& v, int channels, int stride, float fill) {
  const size_t rows = v.size() / channels;
  std::vector<float> out(rows * stride, fill);
  for (size_t r = 0; r < rows; ++r)
    for (int c = 0; c < channels; ++c) out[r * stride + c] = v[r * channels + c];
  return out;
}

SparseConvParams params(int c_in, int c_out, int h, int w, int k, int s, int groups, int tile, Activation act,
                        Activation post) {
  SparseConvParams p{};
  p.batch = 1;
  p.in_channels = c_in;
  p.out_channels = c_out;
  p.in_h = h;
  p.in_w = w;
  p.out_h = (h + s - 1) / s;
  p.out_w = (w + s - 1) / s;
  p.kernel_h = p.kernel_w = k;
  p.stride_h = p.stride_w = s;
  p.dilation_h = p.dilation_w = 1;
  p.pad_top = std::max((p.out_h - 1) * s + k - h, 0) / 2;
  p.pad_left = std::max((p.out_w - 1) * s + k - w, 0) / 2;
  p.groups = groups;
  p.tile = tile;
  p.act = act;
  p.act_alpha = 0.1f;
  p.post_act = post;
  return p;
}

float roundTo(DataType dt, float v) { return dt == DataType::kFloat16 ? __half2float(__float2half(v)) : v; }

std::vector<float> randomVec(std::mt19937& g, size_t n, DataType dt, float scale = 1.f) {
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = roundTo(dt, d(g));
  return v;
}

// ---- the references ---------------------------------------------------------------------------------

// Direct NHWC conv + bias -> act -> + residual -> post_act of one output value (the test's own oracle).
// Maps' rows are p.inStride() / p.outStride() apart; a grouped weight is [g][taps * C_in/g][C_out/g].
float direct(const SparseConvParams& p, const std::vector<float>& in, const std::vector<float>& wK,
             const std::vector<float>& bias, const float* residual, int cell, int co) {
  const bool dw = p.groups > 1 && p.groups == p.in_channels && p.in_channels == p.out_channels;
  const int cinG = p.in_channels / p.groups, coutG = p.out_channels / p.groups, grp = co / coutG;
  const size_t block = (size_t)p.kernel_h * p.kernel_w * cinG * coutG;
  const int oy = cell / p.out_w, ox = cell % p.out_w;
  float acc = bias.empty() ? 0.f : bias[co];
  for (int ky = 0; ky < p.kernel_h; ++ky)
    for (int kx = 0; kx < p.kernel_w; ++kx) {
      const int iy = oy * p.stride_h - p.pad_top + ky, ix = ox * p.stride_w - p.pad_left + kx;
      if (iy < 0 || iy >= p.in_h || ix < 0 || ix >= p.in_w) continue;
      const float* x = &in[((size_t)iy * p.in_w + ix) * p.inStride()];
      if (dw) {
        acc += x[co] * wK[(ky * p.kernel_w + kx) * p.out_channels + co];
      } else {
        for (int c = 0; c < cinG; ++c)
          acc += x[grp * cinG + c] *
                 wK[grp * block + ((size_t)(ky * p.kernel_w + kx) * cinG + c) * coutG + co % coutG];
      }
    }
  float v = passrt::activate(p.act, p.act_alpha, acc);
  if (residual) v += residual[(size_t)cell * p.outStride() + co];
  return passrt::activate(p.post_act, p.act_alpha, v);
}

// The CPU twin of convCellsNhwcCuda / depthwiseCellsNhwcCuda: the native executor's building blocks.
// rows: when given, the result goes to rows [n, C_out] (epilogue applied, no residual), not to out.
void cpuTwin(const SparseConvParams& p, const float* in, bool rowsIn, const std::vector<float>& wK,
             const std::vector<float>& bias, const float* residual, const std::vector<int32_t>& cells, float* out,
             float* rows) {
  const int64_t n = (int64_t)cells.size();
  if (p.groups > 1 && p.groups == p.in_channels && p.in_channels == p.out_channels) {
    std::vector<float> y((size_t)n * p.out_channels);
    passrt::depthwiseNhwc(p, in, wK.data(), bias.empty() ? nullptr : bias.data(), cells.data(), 0, n, y.data());
    passrt::epilogueNhwc(p, p.out_channels, y.data(), nullptr, residual, cells.data(), 0, n, rows ? nullptr : out);
    if (rows) std::memcpy(rows, y.data(), y.size() * sizeof(float));
    return;
  }
  // groups 1, or each group of a grouped conv as a groups-1 conv over its channel slice (groupSlice).
  const SparseConvParams g1 = passrt::groupSlice(p);
  const int64_t K = (int64_t)g1.kernel_h * g1.kernel_w * g1.in_channels, coutG = g1.out_channels;
  for (int grp = 0; grp < p.groups; ++grp) {
    std::vector<float> y((size_t)n * coutG), cols;
    const float* a = in;
    if (!rowsIn) {
      cols.resize((size_t)n * K);
      passrt::gatherWindowsNhwc(g1, in + grp * g1.in_channels, cells.data(), 0, n, cols.data());
      a = cols.data();
    }
    const float* w = wK.data() + (size_t)grp * K * coutG;
    for (int64_t i = 0; i < n; ++i)
      for (int co = 0; co < coutG; ++co) {
        double acc = 0.0;  // the bias is the epilogue's, as in the native executor
        for (int64_t k = 0; k < K; ++k) acc += (double)a[i * K + k] * w[k * coutG + co];
        y[i * coutG + co] = (float)acc;
      }
    passrt::epilogueNhwc(g1, (int32_t)coutG, y.data(), bias.empty() ? nullptr : bias.data() + grp * coutG,
                         residual ? residual + grp * coutG : nullptr, cells.data(), 0, n,
                         rows || !out ? nullptr : out + grp * coutG);
    if (rows) std::memcpy(rows, y.data(), y.size() * sizeof(float));  // rows: groups 1 only (the fused 1x1)
  }
}

std::vector<float> tileMask(std::mt19937& g, const SparseConvParams& p, const std::string& kind, double frac) {
  const int th = p.tilesH(), tw = p.tilesW();
  std::vector<float> m((size_t)th * tw, 0.f);
  std::uniform_real_distribution<double> u(0, 1);
  for (int y = 0; y < th; ++y)
    for (int x = 0; x < tw; ++x) {
      float& v = m[(size_t)y * tw + x];
      if (kind == "all-on") v = 1.f;
      if (kind == "random") v = u(g) < frac ? 1.f : 0.f;
      if (kind == "edges") v = (y == 0 || x == 0 || y == th - 1 || x == tw - 1) ? 1.f : 0.f;
    }
  return m;
}

std::vector<int32_t> cpuCells(const SparseConvParams& p, const std::vector<float>& mask) {
  std::vector<int64_t> tiles;
  for (size_t t = 0; t < mask.size(); ++t)
    if (mask[t] > 0.5f) tiles.push_back((int64_t)t);
  std::vector<int32_t> cells(tiles.size() * p.tile * p.tile);
  const int64_t n = passrt::tileCells(p.out_h, p.out_w, p.tile, tiles.data(), (int64_t)tiles.size(), cells.data());
  cells.resize((size_t)std::max<int64_t>(n, 0));
  return cells;
}

const std::vector<Case> kCases = {
    {16, 24, 13, 17, 1, 1, 0, 0},  {40, 12, 9, 11, 1, 1, 0, 0},  {3, 32, 15, 18, 3, 2, 0, 0},
    {24, 70, 10, 9, 3, 1, 0, 0},   {96, 96, 12, 14, 3, 2, 1, 0}, {33, 33, 11, 10, 3, 1, 1, 0},
    {144, 144, 9, 13, 3, 1, 1, 24}, {32, 32, 14, 12, 3, 1, 1, 16},
    // kHWC8 rows: SSDLite's 12-channel head (rows of 96 in, 16 out), odd channel counts, a depthwise conv
    // of 12 channels, a fused pair writing 12 channels into rows of 16.
    {96, 12, 10, 13, 3, 1, 0, 0, 0, true}, {20, 12, 9, 11, 1, 1, 0, 0, 0, true},
    {12, 12, 9, 10, 3, 2, 1, 0, 0, true},  {32, 32, 14, 12, 3, 1, 1, 12, 0, true},
    // grouped convs (2 -> 3 channels per group, packed; 4 -> 2 per group, kHWC8 rows of 8 and 16)
    {8, 12, 11, 9, 3, 1, 0, 0, 4, false},  {12, 6, 10, 10, 3, 2, 0, 0, 3, true},
};
const int kTiles[] = {1, 2, 3, 4, 8};
const char* kMasks[] = {"all-off", "all-on", "random", "edges"};
enum ResidualMode { kNoResidual, kSeparate, kAliased };

// ---- CPU side: the twins against the direct conv -------------------------------------------------------

void cpuSide() {
  int checked = 0;
  std::mt19937 g(1234);
  for (const Case& c : kCases)
    for (int tile : kTiles)
      for (const char* mk : kMasks)
        for (int rm = kNoResidual; rm <= kAliased; ++rm) {
          const int cout = c.dw ? c.c_in : c.c_out, groups = groupsOf(c);
          SparseConvParams p = params(c.c_in, cout, c.h, c.w, c.k, c.s, groups, tile, Activation::kRelu6,
                                      rm ? Activation::kRelu : Activation::kNone);
          p.in_stride = rowStride(c, c.c_in);
          p.out_stride = rowStride(c, cout);
          const auto in = spread(randomVec(g, (size_t)c.h * c.w * c.c_in, DataType::kFloat32), c.c_in, p.inStride(),
                                 NAN);
          const auto wK = randomVec(g, (size_t)c.k * c.k * (c.c_in / groups) * cout, DataType::kFloat32, 0.3f);
          const auto bias = randomVec(g, cout, DataType::kFloat32);
          const size_t cellsN = (size_t)p.out_h * p.out_w;
          const auto cache = spread(randomVec(g, cellsN * cout, DataType::kFloat32), cout, p.outStride(), kSentinel);
          const auto res = spread(randomVec(g, cellsN * cout, DataType::kFloat32), cout, p.outStride(), kSentinel);
          const auto cells = cpuCells(p, tileMask(g, p, mk, 0.3));
          std::vector<float> out = cache;
          const float* residual = rm == kSeparate ? res.data() : rm == kAliased ? out.data() : nullptr;
          cpuTwin(p, in.data(), false, wK, bias, residual, cells, out.data(), nullptr);
          std::vector<char> active(p.out_h * p.out_w, 0);
          for (int32_t cell : cells) active[cell] = 1;
          for (int cell = 0; cell < p.out_h * p.out_w; ++cell)
            for (int co = 0; co < p.outStride(); ++co) {
              const size_t i = (size_t)cell * p.outStride() + co;
              if (!active[cell] || co >= cout) {  // inactive cells and the rows' padding: untouched
                EXPECT(std::memcmp(&out[i], &cache[i], 4) == 0, "cpu: inactive cell %d changed", cell);
                continue;
              }
              const float* r = rm == kSeparate ? res.data() : rm == kAliased ? cache.data() : nullptr;
              const float want = direct(p, in, wK, bias, r, cell, co);
              EXPECT(std::fabs(out[i] - want) <= 1e-4f * (1.f + std::fabs(want)), "cpu twin k%d s%d dw%d tile %d %s: "
                     "cell %d ch %d got %g want %g (groups %d hwc8 %d)", c.k, c.s, c.dw, tile, mk, cell, co, out[i],
                     want, groups, c.hwc8);
            }
          ++checked;
        }
  std::printf("CPU twins vs direct conv: %d cases, %s\n", checked, failures ? "FAILED" : "ok");
}

// ---- GPU side ----------------------------------------------------------------------------------------

#define CUDA_OK(call)                                                                          \
  do {                                                                                         \
    cudaError_t e_ = (call);                                                                   \
    if (e_ != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "FAIL %s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      std::exit(1);                                                                            \
    }                                                                                          \
  } while (0)

struct Dev {  // one device buffer holding a host vector in the test's dtype
  void* ptr = nullptr;
  size_t n = 0;
  DataType dt = DataType::kFloat32;
  Dev(const std::vector<float>& v, DataType t) : n(v.size()), dt(t) {
    CUDA_OK(cudaMalloc(&ptr, std::max<size_t>(n, 1) * 4));
    upload(v);
  }
  explicit Dev(size_t bytes) { CUDA_OK(cudaMalloc(&ptr, std::max<size_t>(bytes, 4))); }
  ~Dev() { cudaFree(ptr); }
  void upload(const std::vector<float>& v) {
    if (dt == DataType::kFloat16) {
      std::vector<__half> h(v.size());
      for (size_t i = 0; i < v.size(); ++i) h[i] = __float2half(v[i]);
      CUDA_OK(cudaMemcpy(ptr, h.data(), h.size() * 2, cudaMemcpyHostToDevice));
    } else {
      CUDA_OK(cudaMemcpy(ptr, v.data(), v.size() * 4, cudaMemcpyHostToDevice));
    }
  }
  std::vector<float> download() const {
    std::vector<float> v(n);
    if (dt == DataType::kFloat16) {
      std::vector<__half> h(n);
      CUDA_OK(cudaMemcpy(h.data(), ptr, n * 2, cudaMemcpyDeviceToHost));
      for (size_t i = 0; i < n; ++i) v[i] = __half2float(h[i]);
    } else {
      CUDA_OK(cudaMemcpy(v.data(), ptr, n * 4, cudaMemcpyDeviceToHost));
    }
    return v;
  }
};

void gpuSide() {
  int checked = 0;
  // The paths the TensorRT plugin gained (printed as their own PASS/FAIL lines for benchmarks/gpu_check.sh):
  // fp16 maps in kHWC8 rows (SSDLite's 12-channel heads: C padded to 16), and grouped convs on the GEMM kernel.
  int hwc8Cases = 0, hwc8Failures = 0, groupedCases = 0, groupedFailures = 0;
  std::mt19937 g(99);
  for (DataType dt : {DataType::kFloat32, DataType::kFloat16}) {
    const float tol = dt == DataType::kFloat16 ? 2e-2f : 1e-4f;
    for (const Case& c : kCases)
      for (int tile : kTiles)
        for (const char* mk : kMasks)
          for (int rm = kNoResidual; rm <= kAliased; ++rm) {
            if (quick && (tile == 2 || tile == 4 || std::strcmp(mk, "random") != 0)) continue;
            const int cmid = c.dw ? c.c_in : c.c_out, cout = c.fuse ? c.fuse : cmid, groups = groupsOf(c);
            SparseConvParams p = params(c.c_in, cmid, c.h, c.w, c.k, c.s, groups, tile,
                                        Activation::kRelu6, Activation::kNone);
            SparseConvParams q = params(cmid, cout, p.out_h, p.out_w, 1, 1, 1, tile, Activation::kNone,
                                        rm ? Activation::kRelu : Activation::kNone);  // the fused 1x1
            p.in_stride = rowStride(c, c.c_in);  // the map rows: input, and the last conv's output/residual
            (c.fuse ? q : p).out_stride = rowStride(c, cout);
            if (!c.fuse) {
              p.post_act = q.post_act;
            }
            const int outStride = (c.fuse ? q : p).outStride();
            const auto in = spread(randomVec(g, (size_t)c.h * c.w * c.c_in, dt), c.c_in, p.inStride(), NAN);
            const auto wK = randomVec(g, (size_t)c.k * c.k * (c.c_in / groups) * cmid, dt, 0.3f);
            const auto w1 = randomVec(g, (size_t)cmid * cout, dt, 0.3f);
            const auto bias = randomVec(g, cmid, DataType::kFloat32), bias1 = randomVec(g, cout, DataType::kFloat32);
            const size_t cellsN = (size_t)p.out_h * p.out_w, outN = cellsN * outStride;
            const auto cache = spread(randomVec(g, cellsN * cout, dt), cout, outStride, kSentinel);
            const auto res = spread(randomVec(g, cellsN * cout, dt), cout, outStride, kSentinel);
            const auto mask = tileMask(g, p, mk, 0.3);
            const auto cells = cpuCells(p, mask);
            const int failuresBefore = failures;
            // CPU twin in fp32 on the same (rounded) values; the fused pair through rows, as on the GPU.
            std::vector<float> want = cache;
            const float* residual = rm == kSeparate ? res.data() : rm == kAliased ? want.data() : nullptr;
            if (c.fuse) {
              std::vector<float> rows(cells.size() * cmid);
              cpuTwin(p, in.data(), false, wK, bias, nullptr, cells, nullptr, rows.data());
              for (auto& v : rows) v = roundTo(dt, v);  // the GPU stores the rows in dt
              cpuTwin(q, rows.data(), true, w1, bias1, residual, cells, want.data(), nullptr);
            } else {
              cpuTwin(p, in.data(), false, wK, bias, residual, cells, want.data(), nullptr);
            }
            // GPU.
            const int capacity = p.tilesH() * p.tilesW() * tile * tile;
            Dev dIn(in, dt), dW(wK, dt), dW1(w1, dt), dB(bias, DataType::kFloat32), dB1(bias1, DataType::kFloat32),
                dOut(cache, dt), dRes(res, dt), dMask(mask, DataType::kFloat32);
            Dev dCells((size_t)capacity * 4), dCount(4), dRows((size_t)capacity * cmid * 4);
            CUDA_OK(passrt::activeCellsCuda(p.out_h, p.out_w, tile, static_cast<const float*>(dMask.ptr),
                                            static_cast<int32_t*>(dCells.ptr), static_cast<int32_t*>(dCount.ptr), 0));
            const passrt::CellRange range{static_cast<const int32_t*>(dCells.ptr),
                                          static_cast<const int32_t*>(dCount.ptr), capacity};
            const void* dResidual = rm == kSeparate ? dRes.ptr : rm == kAliased ? dOut.ptr : nullptr;
            const float* b = static_cast<const float*>(dB.ptr);
            if (c.fuse) {
              CUDA_OK(passrt::depthwiseCellsNhwcCuda(p, dt, dIn.ptr, dW.ptr, b, nullptr, range, dRows.ptr, true, 0));
              CUDA_OK(passrt::convCellsNhwcCuda(q, dt, dRows.ptr, true, dW1.ptr, static_cast<const float*>(dB1.ptr),
                                                dResidual, range, dOut.ptr, false, 0));
            } else if (c.dw) {  // a grouped conv (c.g) runs on the GEMM kernel, one grid slice per group
              CUDA_OK(passrt::depthwiseCellsNhwcCuda(p, dt, dIn.ptr, dW.ptr, b, dResidual, range, dOut.ptr, false, 0));
            } else {
              CUDA_OK(passrt::convCellsNhwcCuda(p, dt, dIn.ptr, false, dW.ptr, b, dResidual, range, dOut.ptr, false, 0));
            }
            CUDA_OK(cudaDeviceSynchronize());
            int32_t count = -1;
            CUDA_OK(cudaMemcpy(&count, dCount.ptr, 4, cudaMemcpyDeviceToHost));
            std::vector<int32_t> gotCells(std::max(count, 0));
            if (count > 0) CUDA_OK(cudaMemcpy(gotCells.data(), dCells.ptr, count * 4, cudaMemcpyDeviceToHost));
            EXPECT(gotCells == cells, "activeCellsCuda: %d cells, tileCells %zu (tile %d, %s)", count, cells.size(),
                   tile, mk);
            {  // the same list from tile ids (the native executor's form), into a second buffer
              std::vector<int64_t> ids;
              for (size_t t = 0; t < mask.size(); ++t)
                if (mask[t] > 0.5f) ids.push_back((int64_t)t);
              Dev dIds(ids.size() * 8), dCells2((size_t)capacity * 4), dCount2(4);
              if (!ids.empty()) CUDA_OK(cudaMemcpy(dIds.ptr, ids.data(), ids.size() * 8, cudaMemcpyHostToDevice));
              CUDA_OK(passrt::tileCellsCuda(p.out_h, p.out_w, tile, static_cast<const int64_t*>(dIds.ptr),
                                            (int32_t)ids.size(), static_cast<int32_t*>(dCells2.ptr),
                                            static_cast<int32_t*>(dCount2.ptr), 0));
              int32_t count2 = -1;
              CUDA_OK(cudaMemcpy(&count2, dCount2.ptr, 4, cudaMemcpyDeviceToHost));
              std::vector<int32_t> cells2(std::max(count2, 0));
              if (count2 > 0) CUDA_OK(cudaMemcpy(cells2.data(), dCells2.ptr, count2 * 4, cudaMemcpyDeviceToHost));
              EXPECT(cells2 == cells, "tileCellsCuda: %d cells, tileCells %zu (tile %d, %s)", count2, cells.size(), tile,
                     mk);
            }
            const auto got = dOut.download();
            std::vector<char> active(p.out_h * p.out_w, 0);
            for (int32_t cell : cells) active[cell] = 1;
            for (size_t i = 0; i < outN; ++i) {
              const int cell = (int)(i / outStride);
              if (!active[cell] || (int)(i % outStride) >= cout) {  // the previous cache and the rows' padding,
                                                                    // bit for bit (cache holds dt values)
                EXPECT(std::memcmp(&got[i], &cache[i], 4) == 0, "%s k%d dw%d fuse%d tile %d %s res%d: inactive "
                       "cell %d changed", dt == DataType::kFloat16 ? "fp16" : "fp32", c.k, c.dw, c.fuse, tile, mk, rm,
                       cell);
              } else {
                EXPECT(std::fabs(got[i] - want[i]) <= tol * (1.f + std::fabs(want[i])), "%s k%d s%d dw%d fuse%d "
                       "tile %d %s res%d g%d hwc8 %d: cell %d ch %zu got %g want %g",
                       dt == DataType::kFloat16 ? "fp16" : "fp32", c.k, c.s, c.dw, c.fuse, tile, mk, rm, groups, c.hwc8,
                       cell, i % outStride, got[i], want[i]);
              }
            }
            ++checked;
            if (c.hwc8 && dt == DataType::kFloat16) {
              ++hwc8Cases;
              hwc8Failures += failures > failuresBefore;
            }
            if (c.g > 1) {
              ++groupedCases;
              groupedFailures += failures > failuresBefore;
            }
          }
  }
  std::printf("CUDA kernels vs CPU twins: %d cases, %s\n", checked, failures ? "FAILED" : "ok");
  std::printf("%s: fp16 kHWC8 rows (C padded to 8: a 12-channel head in rows of 16) on the tile kernels: %d cases, "
              "%d failed\n", hwc8Failures || !hwc8Cases ? "FAIL" : "PASS", hwc8Cases, hwc8Failures);
  std::printf("%s: grouped convs on the GEMM tile kernel (one grid slice per group): %d cases, %d failed\n",
              groupedFailures || !groupedCases ? "FAIL" : "PASS", groupedCases, groupedFailures);
}

// The plugin's weight preparation (kernelLayoutCuda) against the layout written out here from ONNX's OIHW:
// pure data movement, so bit for bit; the bias converted to float32 (exact from fp16).
void layoutSide() {
  int checked = 0;
  std::mt19937 g(7);
  struct L { int c_in, c_out, k, dw, g; } const layouts[] = {{5, 7, 3, 0, 1},  {16, 24, 1, 0, 1}, {3, 32, 3, 0, 1},
                                                              {6, 6, 3, 1, 1},  {40, 40, 5, 1, 1}, {8, 12, 3, 0, 4},
                                                              {12, 6, 1, 0, 3}};
  for (DataType dt : {DataType::kFloat32, DataType::kFloat16})
    for (const L& l : layouts)
      for (bool withBias : {true, false}) {
        const SparseConvParams p = params(l.c_in, l.c_out, 9, 9, l.k, 1, l.dw ? l.c_in : l.g, 2, Activation::kNone,
                                          Activation::kNone);
        // depthwise: [tap][C]; otherwise [group][tap * C_in/g + c][C_out/g] (one block for groups 1)
        const int cin = l.dw ? 1 : l.c_in / l.g, coutG = l.dw ? l.c_out : l.c_out / l.g, taps = l.k * l.k;
        const auto oihw = randomVec(g, (size_t)l.c_out * cin * taps, dt);
        const auto bias = randomVec(g, l.c_out, dt);
        std::vector<float> want(oihw.size());
        for (int co = 0; co < l.c_out; ++co)
          for (int c = 0; c < cin; ++c)
            for (int t = 0; t < taps; ++t)
              want[(size_t)(co / coutG) * taps * cin * coutG + ((size_t)t * cin + c) * coutG + co % coutG] =
                  oihw[((size_t)co * cin + c) * taps + t];
        Dev dW(oihw, dt), dB(bias, dt), dOut(std::vector<float>(want.size(), -1.f), dt);
        Dev dBias(std::vector<float>(l.c_out, -1.f), DataType::kFloat32);
        CUDA_OK(passrt::kernelLayoutCuda(p, dt, dW.ptr, withBias ? dB.ptr : nullptr, dOut.ptr,
                                         static_cast<float*>(dBias.ptr), 0));
        CUDA_OK(cudaDeviceSynchronize());
        EXPECT(dOut.download() == want, "kernelLayoutCuda: %s c_in %d c_out %d k %d dw %d g %d: weight layout differs",
               dt == DataType::kFloat16 ? "fp16" : "fp32", l.c_in, l.c_out, l.k, l.dw, l.g);
        EXPECT(dBias.download() == (withBias ? bias : std::vector<float>(l.c_out, 0.f)),
               "kernelLayoutCuda: bias differs (%s, bias %d)", dt == DataType::kFloat16 ? "fp16" : "fp32", withBias);
        ++checked;
      }
  std::printf("plugin weight layout vs OIHW: %d cases, %s\n", checked, failures ? "FAILED" : "ok");
}

// affineCellsNhwcCuda against its CPU twin affineNhwc: active cells within rounding (fp16: the result is
// stored in fp16), every other row bit for bit; in place (input == output) too.
void affineSide() {
  int checked = 0;
  std::mt19937 g(11);
  for (DataType dt : {DataType::kFloat32, DataType::kFloat16})
    for (int channels : {3, 16, 40})
      for (int tile : {1, 4, 8})
        for (const char* mk : kMasks)
          for (bool inPlace : {false, true}) {
            const SparseConvParams p = params(channels, channels, 23, 19, 1, 1, 1, tile, Activation::kNone,
                                              Activation::kNone);
            const size_t n = (size_t)p.out_h * p.out_w * channels;
            const auto in = randomVec(g, n, dt), cache = randomVec(g, n, dt);
            const auto scale = randomVec(g, channels, DataType::kFloat32);
            const auto shift = randomVec(g, channels, DataType::kFloat32);
            const auto mask = tileMask(g, p, mk, 0.3);
            const auto cells = cpuCells(p, mask);
            std::vector<float> want = inPlace ? in : cache;
            passrt::affineNhwc(channels, in.data(), scale.data(), shift.data(), cells.data(), 0, (int64_t)cells.size(),
                               want.data());
            const int capacity = p.tilesH() * p.tilesW() * tile * tile;
            Dev dIn(in, dt), dOut(cache, dt), dScale(scale, DataType::kFloat32), dShift(shift, DataType::kFloat32),
                dMask(mask, DataType::kFloat32), dCells((size_t)capacity * 4), dCount(4);
            CUDA_OK(passrt::activeCellsCuda(p.out_h, p.out_w, tile, static_cast<const float*>(dMask.ptr),
                                            static_cast<int32_t*>(dCells.ptr), static_cast<int32_t*>(dCount.ptr), 0));
            const passrt::CellRange range{static_cast<const int32_t*>(dCells.ptr),
                                          static_cast<const int32_t*>(dCount.ptr), capacity};
            Dev& out = inPlace ? dIn : dOut;
            CUDA_OK(passrt::affineCellsNhwcCuda(channels, dt, dIn.ptr, static_cast<const float*>(dScale.ptr),
                                                static_cast<const float*>(dShift.ptr), range, out.ptr, 0));
            CUDA_OK(cudaDeviceSynchronize());
            const auto got = out.download();
            std::vector<char> active(p.out_h * p.out_w, 0);
            for (int32_t cell : cells) active[cell] = 1;
            const float tol = dt == DataType::kFloat16 ? 1e-3f : 1e-6f;
            for (size_t i = 0; i < n; ++i) {
              if (!active[i / channels]) {
                EXPECT(std::memcmp(&got[i], &want[i], 4) == 0, "affine: inactive value %zu changed", i);
              } else {
                EXPECT(std::fabs(got[i] - want[i]) <= tol * (1.f + std::fabs(want[i])), "affine %s C%d tile %d %s "
                       "in-place %d: value %zu got %g want %g", dt == DataType::kFloat16 ? "fp16" : "fp32", channels,
                       tile, mk, inPlace, i, got[i], want[i]);
              }
            }
            ++checked;
          }
  std::printf("affine kernel vs CPU twin: %d cases, %s\n", checked, failures ? "FAILED" : "ok");
}

// ---- timing ------------------------------------------------------------------------------------------

void timeSsdlite(FILE* json) {
  std::mt19937 g(7);
  const DataType dt = DataType::kFloat16;
  cudaEvent_t a, b;
  CUDA_OK(cudaEventCreate(&a));
  CUDA_OK(cudaEventCreate(&b));
  std::printf("%-28s %8s %8s %8s   (ms, fp16, median of 20; compaction included)\n", "layer", "0%", "15%", "100%");
  if (json) std::fprintf(json, "[\n");
  bool firstRow = true;
  for (const auto& L : kSsdliteLayers) {
    SparseConvParams p = params(L.c_in, L.c_mid, L.h, L.w, L.kernel, L.stride, L.depthwise ? L.c_in : 1, L.tile,
                                Activation::kRelu6, Activation::kNone);
    p.out_h = L.out_h;
    p.out_w = L.out_w;
    p.pad_top = L.pad_top;
    p.pad_left = L.pad_left;
    SparseConvParams q = params(L.c_mid, L.c_out, L.out_h, L.out_w, 1, 1, 1, L.tile, Activation::kNone,
                                Activation::kNone);
    const int capacity = p.tilesH() * p.tilesW() * L.tile * L.tile;
    Dev dIn(randomVec(g, (size_t)L.h * L.w * L.c_in, dt), dt);
    Dev dW(randomVec(g, (size_t)L.kernel * L.kernel * (L.depthwise ? 1 : L.c_in) * L.c_mid, dt, 0.1f), dt);
    Dev dW1(randomVec(g, (size_t)L.c_mid * L.c_out, dt, 0.1f), dt);
    Dev dOut(std::vector<float>((size_t)L.out_h * L.out_w * L.c_out, 0.f), dt);
    Dev dRows((size_t)capacity * L.c_mid * 2), dCells((size_t)capacity * 4), dCount(4);
    const passrt::CellRange range{static_cast<const int32_t*>(dCells.ptr), static_cast<const int32_t*>(dCount.ptr),
                                  capacity};
    const void* res = L.residual ? dOut.ptr : nullptr;
    double ms[3];
    const double fracs[3] = {0.0, 0.15, 1.0};
    for (int f = 0; f < 3; ++f) {
      Dev dMask(tileMask(g, p, "random", fracs[f]), DataType::kFloat32);
      std::vector<float> runs;
      for (int r = 0; r < 23; ++r) {
        CUDA_OK(cudaEventRecord(a));
        CUDA_OK(passrt::activeCellsCuda(p.out_h, p.out_w, p.tile, static_cast<const float*>(dMask.ptr),
                                        static_cast<int32_t*>(dCells.ptr), static_cast<int32_t*>(dCount.ptr), 0));
        if (L.fused) {
          CUDA_OK(passrt::depthwiseCellsNhwcCuda(p, dt, dIn.ptr, dW.ptr, nullptr, nullptr, range, dRows.ptr, true, 0));
          CUDA_OK(passrt::convCellsNhwcCuda(q, dt, dRows.ptr, true, dW1.ptr, nullptr, res, range, dOut.ptr, false, 0));
        } else if (L.depthwise) {
          CUDA_OK(passrt::depthwiseCellsNhwcCuda(p, dt, dIn.ptr, dW.ptr, nullptr, res, range, dOut.ptr, false, 0));
        } else {
          CUDA_OK(passrt::convCellsNhwcCuda(p, dt, dIn.ptr, false, dW.ptr, nullptr, res, range, dOut.ptr, false, 0));
        }
        CUDA_OK(cudaEventRecord(b));
        CUDA_OK(cudaEventSynchronize(b));
        float t = 0.f;
        CUDA_OK(cudaEventElapsedTime(&t, a, b));
        if (r >= 3) runs.push_back(t);  // 3 warm-up runs
      }
      std::nth_element(runs.begin(), runs.begin() + runs.size() / 2, runs.end());
      ms[f] = runs[runs.size() / 2];
    }
    std::printf("%-28s %8.4f %8.4f %8.4f\n", L.label, ms[0], ms[1], ms[2]);
    if (json) {
      std::fprintf(json, "%s {\"layer\": \"%s\", \"ms_0\": %.5f, \"ms_15\": %.5f, \"ms_100\": %.5f}", firstRow ? "" : ",\n",
                   L.label, ms[0], ms[1], ms[2]);
      firstRow = false;
    }
  }
  if (json) std::fprintf(json, "\n]\n");
}

}  // namespace

int main(int argc, char** argv) {
  bool cpuOnly = false, timing = false;
  const char* jsonPath = nullptr;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--cpu-only") {
      cpuOnly = true;
    } else if (a == "--quick") {
      quick = true;
    } else if (a == "--time") {
      timing = true;
    } else if (a == "--json" && i + 1 < argc) {
      jsonPath = argv[++i];
    } else {
      std::fprintf(stderr, "usage: twins_test [--cpu-only] [--quick] [--time] [--json FILE]\n");
      return 2;
    }
  }
  cpuSide();
  if (failures) return 1;
  if (cpuOnly) return 0;
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess || devices == 0) {
    const char* req = std::getenv("PASSRT_REQUIRE_GPU");
    const bool required = req && *req && std::strcmp(req, "0") != 0;
    std::printf("%s: GPU side not run: no CUDA device (%s)\n", required ? "FAIL" : "SKIP",
                e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    return required ? 1 : 77;
  }
  cudaDeviceProp prop{};
  CUDA_OK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
  gpuSide();
  layoutSide();
  affineSide();
  if (failures) return 1;
  if (timing) {
    FILE* json = jsonPath ? std::fopen(jsonPath, "w") : nullptr;
    timeSsdlite(json);
    if (json) std::fclose(json);
  }
  return failures ? 1 : 0;
}
