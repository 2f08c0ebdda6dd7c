// Standalone test of the NHWC tile kernels: no torch, no TensorRT.
//
//   twins_test [--cpu-only] [--quick] [--time] [--json FILE]
//
// 1. CPU side (runs anywhere): the CPU twins (passrt_tiles.h: tileCells, gatherWindowsNhwc + a GEMM,
//    depthwiseNhwc, epilogueNhwc) against a direct NHWC convolution written here, over the matrix
//    below. This checks the twins' composition, which is the CUDA kernels' reference.
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
};

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
float direct(const SparseConvParams& p, const std::vector<float>& in, const std::vector<float>& wK,
             const std::vector<float>& bias, const float* residual, int cell, int co) {
  const bool dw = p.groups > 1;
  const int oy = cell / p.out_w, ox = cell % p.out_w;
  float acc = bias.empty() ? 0.f : bias[co];
  for (int ky = 0; ky < p.kernel_h; ++ky)
    for (int kx = 0; kx < p.kernel_w; ++kx) {
      const int iy = oy * p.stride_h - p.pad_top + ky, ix = ox * p.stride_w - p.pad_left + kx;
      if (iy < 0 || iy >= p.in_h || ix < 0 || ix >= p.in_w) continue;
      const float* x = &in[((size_t)iy * p.in_w + ix) * p.in_channels];
      if (dw) {
        acc += x[co] * wK[(ky * p.kernel_w + kx) * p.out_channels + co];
      } else {
        for (int c = 0; c < p.in_channels; ++c)
          acc += x[c] * wK[((size_t)(ky * p.kernel_w + kx) * p.in_channels + c) * p.out_channels + co];
      }
    }
  float v = passrt::activate(p.act, p.act_alpha, acc);
  if (residual) v += residual[(size_t)cell * p.out_channels + co];
  return passrt::activate(p.post_act, p.act_alpha, v);
}

// The CPU twin of convCellsNhwcCuda / depthwiseCellsNhwcCuda: the native executor's building blocks.
// rows: when given, the result goes to rows [n, C_out] (epilogue applied, no residual), not to out.
void cpuTwin(const SparseConvParams& p, const float* in, bool rowsIn, const std::vector<float>& wK,
             const std::vector<float>& bias, const float* residual, const std::vector<int32_t>& cells, float* out,
             float* rows) {
  const int64_t n = (int64_t)cells.size();
  std::vector<float> y((size_t)n * p.out_channels);
  if (p.groups > 1) {
    passrt::depthwiseNhwc(p, in, wK.data(), bias.empty() ? nullptr : bias.data(), cells.data(), 0, n, y.data());
  } else {
    const int64_t K = (int64_t)p.kernel_h * p.kernel_w * p.in_channels;
    std::vector<float> cols;
    const float* a = in;
    if (!rowsIn) {
      cols.resize((size_t)n * K);
      passrt::gatherWindowsNhwc(p, in, cells.data(), 0, n, cols.data());
      a = cols.data();
    }
    for (int64_t i = 0; i < n; ++i)
      for (int co = 0; co < p.out_channels; ++co) {
        double acc = bias.empty() ? 0.0 : bias[co];
        for (int64_t k = 0; k < K; ++k) acc += (double)a[i * K + k] * wK[k * p.out_channels + co];
        y[i * p.out_channels + co] = (float)acc;
      }
  }
  passrt::epilogueNhwc(p, p.out_channels, y.data(), residual, cells.data(), 0, n, rows ? nullptr : out);
  if (rows) std::memcpy(rows, y.data(), y.size() * sizeof(float));
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
          const int cout = c.dw ? c.c_in : c.c_out;
          SparseConvParams p = params(c.c_in, cout, c.h, c.w, c.k, c.s, c.dw ? c.c_in : 1, tile, Activation::kRelu6,
                                      rm ? Activation::kRelu : Activation::kNone);
          const auto in = randomVec(g, (size_t)c.h * c.w * c.c_in, DataType::kFloat32);
          const auto wK = randomVec(g, (size_t)c.k * c.k * (c.dw ? 1 : c.c_in) * cout, DataType::kFloat32, 0.3f);
          const auto bias = randomVec(g, cout, DataType::kFloat32);
          const size_t outN = (size_t)p.out_h * p.out_w * cout;
          const auto cache = randomVec(g, outN, DataType::kFloat32);
          const auto res = randomVec(g, outN, DataType::kFloat32);
          const auto cells = cpuCells(p, tileMask(g, p, mk, 0.3));
          std::vector<float> out = cache;
          const float* residual = rm == kSeparate ? res.data() : rm == kAliased ? out.data() : nullptr;
          cpuTwin(p, in.data(), false, wK, bias, residual, cells, out.data(), nullptr);
          std::vector<char> active(p.out_h * p.out_w, 0);
          for (int32_t cell : cells) active[cell] = 1;
          for (int cell = 0; cell < p.out_h * p.out_w; ++cell)
            for (int co = 0; co < cout; ++co) {
              const size_t i = (size_t)cell * cout + co;
              if (!active[cell]) {
                EXPECT(std::memcmp(&out[i], &cache[i], 4) == 0, "cpu: inactive cell %d changed", cell);
                continue;
              }
              const float* r = rm == kSeparate ? res.data() : rm == kAliased ? cache.data() : nullptr;
              const float want = direct(p, in, wK, bias, r, cell, co);
              EXPECT(std::fabs(out[i] - want) <= 1e-4f * (1.f + std::fabs(want)), "cpu twin k%d s%d dw%d tile %d %s: "
                     "cell %d ch %d got %g want %g", c.k, c.s, c.dw, tile, mk, cell, co, out[i], want);
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
  std::mt19937 g(99);
  for (DataType dt : {DataType::kFloat32, DataType::kFloat16}) {
    const float tol = dt == DataType::kFloat16 ? 2e-2f : 1e-4f;
    for (const Case& c : kCases)
      for (int tile : kTiles)
        for (const char* mk : kMasks)
          for (int rm = kNoResidual; rm <= kAliased; ++rm) {
            if (quick && (tile == 2 || tile == 4 || std::strcmp(mk, "random") != 0)) continue;
            const int cmid = c.dw ? c.c_in : c.c_out, cout = c.fuse ? c.fuse : cmid;
            SparseConvParams p = params(c.c_in, cmid, c.h, c.w, c.k, c.s, c.dw ? c.c_in : 1, tile,
                                        Activation::kRelu6, Activation::kNone);
            SparseConvParams q = params(cmid, cout, p.out_h, p.out_w, 1, 1, 1, tile, Activation::kNone,
                                        rm ? Activation::kRelu : Activation::kNone);  // the fused 1x1
            if (!c.fuse) {
              p.post_act = q.post_act;
            }
            const SparseConvParams& last = c.fuse ? q : p;
            const auto in = randomVec(g, (size_t)c.h * c.w * c.c_in, dt);
            const auto wK = randomVec(g, (size_t)c.k * c.k * (c.dw ? 1 : c.c_in) * cmid, dt, 0.3f);
            const auto w1 = randomVec(g, (size_t)cmid * cout, dt, 0.3f);
            const auto bias = randomVec(g, cmid, DataType::kFloat32), bias1 = randomVec(g, cout, DataType::kFloat32);
            const size_t outN = (size_t)p.out_h * p.out_w * cout;
            const auto cache = randomVec(g, outN, dt), res = randomVec(g, outN, dt);
            const auto mask = tileMask(g, p, mk, 0.3);
            const auto cells = cpuCells(p, mask);
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
            } else if (c.dw) {
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
              const int cell = (int)(i / cout);
              if (!active[cell]) {  // the previous cache, bit for bit (compared in dt: cache holds dt values)
                EXPECT(std::memcmp(&got[i], &cache[i], 4) == 0, "%s k%d dw%d fuse%d tile %d %s res%d: inactive "
                       "cell %d changed", dt == DataType::kFloat16 ? "fp16" : "fp32", c.k, c.dw, c.fuse, tile, mk, rm,
                       cell);
              } else {
                EXPECT(std::fabs(got[i] - want[i]) <= tol * (1.f + std::fabs(want[i])), "%s k%d s%d dw%d fuse%d "
                       "tile %d %s res%d: cell %d ch %zu got %g want %g", dt == DataType::kFloat16 ? "fp16" : "fp32",
                       c.k, c.s, c.dw, c.fuse, tile, mk, rm, cell, i % cout, got[i], want[i]);
              }
            }
            (void)last;
            ++checked;
          }
  }
  std::printf("CUDA kernels vs CPU twins: %d cases, %s\n", checked, failures ? "FAILED" : "ok");
}

// The plugin's weight preparation (kernelLayoutCuda) against the layout written out here from ONNX's OIHW:
// pure data movement, so bit for bit; the bias converted to float32 (exact from fp16).
void layoutSide() {
  int checked = 0;
  std::mt19937 g(7);
  struct L { int c_in, c_out, k, dw; } const layouts[] = {{5, 7, 3, 0}, {16, 24, 1, 0}, {3, 32, 3, 0}, {6, 6, 3, 1},
                                                           {40, 40, 5, 1}};
  for (DataType dt : {DataType::kFloat32, DataType::kFloat16})
    for (const L& l : layouts)
      for (bool withBias : {true, false}) {
        const SparseConvParams p = params(l.c_in, l.c_out, 9, 9, l.k, 1, l.dw ? l.c_in : 1, 2, Activation::kNone,
                                          Activation::kNone);
        const int cin = l.dw ? 1 : l.c_in, taps = l.k * l.k;
        const auto oihw = randomVec(g, (size_t)l.c_out * cin * taps, dt);
        const auto bias = randomVec(g, l.c_out, dt);
        std::vector<float> want(oihw.size());
        for (int co = 0; co < l.c_out; ++co)
          for (int c = 0; c < cin; ++c)
            for (int t = 0; t < taps; ++t)
              want[((size_t)t * cin + c) * l.c_out + co] = oihw[((size_t)co * cin + c) * taps + t];
        Dev dW(oihw, dt), dB(bias, dt), dOut(std::vector<float>(want.size(), -1.f), dt);
        Dev dBias(std::vector<float>(l.c_out, -1.f), DataType::kFloat32);
        CUDA_OK(passrt::kernelLayoutCuda(p, dt, dW.ptr, withBias ? dB.ptr : nullptr, dOut.ptr,
                                         static_cast<float*>(dBias.ptr), 0));
        CUDA_OK(cudaDeviceSynchronize());
        EXPECT(dOut.download() == want, "kernelLayoutCuda: %s c_in %d c_out %d k %d dw %d: weight layout differs",
               dt == DataType::kFloat16 ? "fp16" : "fp32", l.c_in, l.c_out, l.k, l.dw);
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
