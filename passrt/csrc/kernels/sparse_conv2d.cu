// CUDA sparse convolution (passrt_kernels.h: sparseConv2d): recompute the active tiles only.
//
// Launch geometry, the same for every path: a fixed grid with x = (tile, chunk of the tile),
// y = image, z = block of output channels. A block reads its tile's mask first and returns at
// once when the tile is inactive, so the grid never depends on the data. A *chunk* is at most
// 8x8 output cells of one tile (the engine's tiles are 1..8 cells, one chunk each); capping it
// bounds the input window a block stages in shared memory, whatever the tile size.
//
// Strategy, chosen for MobileNetV2-SSDLite (mostly 1x1 convs, 16..1280 channels, and 3x3
// depthwise):
// - Dense and grouped convs, 1x1 included (gemmConvKernel): the block runs a small tiled GEMM
//   out[co, cell] = sum_k W[co, k] * X[k, cell] over k = (input channel of the group, ky, kx).
//   It walks the group's input channels in chunks; per chunk it stages the input window of its
//   cells and the weights (transposed to [k][co]) in shared memory, then each thread adds a
//   TC x TM register tile (TC channels x TM cells). For a 1x1 conv the window is the cells
//   themselves: each input value is read from global memory once per block of output channels
//   and used TC times from registers; each weight is used TM times. The register-tile shape
//   is picked from the chunk's cell count (1, 4, 16 or 64 cells) so that small tiles still
//   keep the threads busy with more output channels.
// - Depthwise (one input channel per group, depthwiseConvKernel): there is no channel
//   reduction to share, the reuse is spatial (the windows of neighbouring cells overlap).
//   The block stages the windows of a block of channels once; each thread computes whole
//   outputs from shared memory.
// - Windows too large for shared memory (huge kernels, dilations or strides):
//   directConvKernel, one thread per output reading global memory (any geometry, slow).
// No tensor cores (WMMA/mma.sync): see README.md for why and what the fast path would be.
//
// Aliasing: `output` must not overlap `input` or `weight`; `residual` may be `output` itself
// (each output cell is read and then written by the same thread).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>

#include "conv_cell.h"

namespace passrt {
namespace {

constexpr int kChunkSide = 8;           // output cells per chunk side (at most 64 cells per block)
constexpr int kMaxStageChannels = 32;   // input channels staged per GEMM step
constexpr int kSmemBudget = 48 * 1024;  // bytes: the default dynamic shared memory limit, no opt-in
constexpr int kDepthwiseThreads = 256;
constexpr int kDirectThreads = 128;
constexpr int kDirectCoBlock = 32;

// Per-launch geometry computed on the host (the same for every block).
struct Plan {
  int32_t chunk_side;       // cells per chunk side: min(tile, kChunkSide)
  int32_t chunks_per_side;  // chunks per tile side: ceil(tile / chunk_side)
  int32_t channels;         // GEMM: input channels per shared-memory stage; depthwise: output channels per block
  int32_t co_blocks;        // GEMM: blocks of output channels per group
};

// The chunk of output cells one block computes: its origin and size, clipped to the tile and to
// the output map (tiles overhang the bottom/right edge). Also the origin and size of its input window.
struct Chunk {
  int32_t n, oy0, ox0, rows, cols;
  int32_t iy0, ix0, win_h, win_w;
};

// Input window of a chunk of rows x cols output cells, per side.
__host__ __device__ __forceinline__ int64_t windowSide(int32_t cells, int32_t stride, int32_t kernel,
                                                       int32_t dilation) {
  return (int64_t)(cells - 1) * stride + (int64_t)(kernel - 1) * dilation + 1;
}

// Largest input window area of a chunk (chunks at the tile or map edge use less of it).
__host__ __device__ __forceinline__ int64_t maxWindowArea(const SparseConvParams& p, const Plan& plan) {
  return windowSide(plan.chunk_side, p.stride_h, p.kernel_h, p.dilation_h) *
         windowSide(plan.chunk_side, p.stride_w, p.kernel_w, p.dilation_w);
}

// Decodes (blockIdx.x, blockIdx.y); false if the tile is inactive or the chunk lies outside the map.
__device__ __forceinline__ bool activeChunk(const SparseConvParams& p, const Plan& plan, const float* tileMask,
                                            Chunk& c) {
  const int32_t tilesW = p.tilesW();
  const int32_t chunksPerTile = plan.chunks_per_side * plan.chunks_per_side;
  const int32_t tileIdx = blockIdx.x / chunksPerTile, chunk = blockIdx.x % chunksPerTile;
  c.n = blockIdx.y;
  if (tileMask[(int64_t)c.n * p.tilesH() * tilesW + tileIdx] <= 0.5f) return false;  // keep the cache
  const int32_t ly0 = (chunk / plan.chunks_per_side) * plan.chunk_side;
  const int32_t lx0 = (chunk % plan.chunks_per_side) * plan.chunk_side;
  c.oy0 = (tileIdx / tilesW) * p.tile + ly0;
  c.ox0 = (tileIdx % tilesW) * p.tile + lx0;
  c.rows = min(plan.chunk_side, min(p.tile - ly0, p.out_h - c.oy0));
  c.cols = min(plan.chunk_side, min(p.tile - lx0, p.out_w - c.ox0));
  if (c.rows <= 0 || c.cols <= 0) return false;
  c.iy0 = c.oy0 * p.stride_h - p.pad_top;
  c.ix0 = c.ox0 * p.stride_w - p.pad_left;
  c.win_h = (int32_t)windowSide(c.rows, p.stride_h, p.kernel_h, p.dilation_h);
  c.win_w = (int32_t)windowSide(c.cols, p.stride_w, p.kernel_w, p.dilation_w);
  return true;
}

// Stages `count` input windows of image c.n as float; window `ch` is input channel
// (first + ch) / mult (mult > 1: a depthwise conv with several output channels per input
// channel). Cells outside the input are the zero padding.
//   input [N, C_in, H, W] -> window [count][win_h * win_w]
template <typename T>
__device__ __forceinline__ void stageWindow(const SparseConvParams& p, const Chunk& c, const T* __restrict__ input,
                                            int32_t first, int32_t count, int32_t mult, float* window) {
  const int32_t area = c.win_h * c.win_w;
  for (int32_t i = threadIdx.x; i < count * area; i += blockDim.x) {
    const int32_t ch = i / area, r = i % area;
    const int32_t iy = c.iy0 + r / c.win_w, ix = c.ix0 + r % c.win_w;
    float v = 0.f;
    if (iy >= 0 && iy < p.in_h && ix >= 0 && ix < p.in_w) {
      const int64_t plane = (int64_t)c.n * p.in_channels + (first + ch) / mult;
      v = toFloat(input[(plane * p.in_h + iy) * p.in_w + ix]);
    }
    window[i] = v;
  }
}

// bias -> act -> (+ residual) -> post_act, then the store; `idx` indexes [N, C_out, H_out, W_out].
template <typename T>
__device__ __forceinline__ void storeOutput(const SparseConvParams& p, float acc, const T* bias, const T* residual,
                                            int32_t co, int64_t idx, T* output) {
  float v = activate(p.act, p.act_alpha, acc + (bias ? toFloat(bias[co]) : 0.f));
  if (residual) v += toFloat(residual[idx]);
  output[idx] = fromFloat<T>(activate(p.post_act, p.act_alpha, v));
}

// Dense/grouped conv as a per-chunk GEMM. kThreadsM x kThreadsCo threads; thread (tm, tc) owns
// cells tm + j * kThreadsM (j < kTM) and channels tc + i * kThreadsCo (i < kTC) of the block, so
// a warp reads consecutive cells (stride-1 windows: no bank conflicts) and stores runs of a row.
// Shared memory: window [channels][win area] then weights [channels * kh * kw][kCoBlock + 1]
// (the +1 keeps the transposing store free of bank conflicts).
template <typename T, int kThreadsM, int kThreadsCo, int kTM, int kTC>
__global__ void __launch_bounds__(kThreadsM* kThreadsCo)
    gemmConvKernel(SparseConvParams p, Plan plan,
                   const T* __restrict__ input,         // [N, C_in, H, W]
                   const T* __restrict__ weight,        // [C_out, C_in / groups, kh, kw]
                   const T* __restrict__ bias,          // [C_out] or nullptr
                   const T* residual,                   // [N, C_out, H_out, W_out] or nullptr (may be output)
                   const float* __restrict__ tileMask,  // [N, tilesH, tilesW]
                   T* output) {                         // [N, C_out, H_out, W_out]
  constexpr int kCoBlock = kThreadsCo * kTC;
  constexpr int kWPitch = kCoBlock + 1;
  Chunk c;
  if (!activeChunk(p, plan, tileMask, c)) return;  // uniform per block: before any __syncthreads

  extern __shared__ float smem[];
  const int32_t khw = p.kernel_h * p.kernel_w;
  const int32_t winArea = c.win_h * c.win_w;
  float* window = smem;
  float* weights = smem + plan.channels * maxWindowArea(p, plan);

  const int32_t cinG = p.in_channels / p.groups, coutG = p.out_channels / p.groups;
  const int32_t group = blockIdx.z / plan.co_blocks;
  const int32_t coG0 = (blockIdx.z % plan.co_blocks) * kCoBlock;  // first output channel, within the group
  const int32_t tm = threadIdx.x % kThreadsM, tc = threadIdx.x / kThreadsM;

  int32_t cellOff[kTM];  // offset of the cell's window origin in the staged window
  bool cellOk[kTM];
#pragma unroll
  for (int j = 0; j < kTM; ++j) {
    const int32_t m = tm + j * kThreadsM, my = m / c.cols, mx = m % c.cols;
    cellOk[j] = m < c.rows * c.cols;
    cellOff[j] = cellOk[j] ? my * p.stride_h * c.win_w + mx * p.stride_w : 0;
  }
  float acc[kTC][kTM];
#pragma unroll
  for (int i = 0; i < kTC; ++i)
#pragma unroll
    for (int j = 0; j < kTM; ++j) acc[i][j] = 0.f;

  for (int32_t ci0 = 0; ci0 < cinG; ci0 += plan.channels) {
    const int32_t count = min(plan.channels, cinG - ci0);
    stageWindow(p, c, input, group * cinG + ci0, count, 1, window);
    const int32_t kLen = count * khw;  // this stage's slice of k, contiguous per output channel
    for (int32_t i = threadIdx.x; i < kCoBlock * kLen; i += blockDim.x) {
      const int32_t co = i / kLen, k = i % kLen;
      float w = 0.f;
      if (coG0 + co < coutG) w = toFloat(weight[((int64_t)(group * coutG + coG0 + co) * cinG + ci0) * khw + k]);
      weights[k * kWPitch + co] = w;
    }
    __syncthreads();
    for (int32_t ch = 0; ch < count; ++ch)
      for (int32_t ky = 0; ky < p.kernel_h; ++ky)
        for (int32_t kx = 0; kx < p.kernel_w; ++kx) {
          const float* x = window + ch * winArea + ky * p.dilation_h * c.win_w + kx * p.dilation_w;
          const float* w = weights + ((ch * p.kernel_h + ky) * p.kernel_w + kx) * kWPitch + tc;
          float xv[kTM], wv[kTC];
#pragma unroll
          for (int j = 0; j < kTM; ++j) xv[j] = x[cellOff[j]];
#pragma unroll
          for (int i = 0; i < kTC; ++i) wv[i] = w[i * kThreadsCo];
#pragma unroll
          for (int i = 0; i < kTC; ++i)
#pragma unroll
            for (int j = 0; j < kTM; ++j) acc[i][j] = fmaf(wv[i], xv[j], acc[i][j]);
        }
    __syncthreads();  // the next stage overwrites the window and the weights
  }

#pragma unroll
  for (int i = 0; i < kTC; ++i) {
    const int32_t coG = coG0 + tc + i * kThreadsCo;
    if (coG >= coutG) continue;
    const int32_t co = group * coutG + coG;
#pragma unroll
    for (int j = 0; j < kTM; ++j) {
      if (!cellOk[j]) continue;
      const int32_t m = tm + j * kThreadsM;
      const int64_t idx =
          (((int64_t)c.n * p.out_channels + co) * p.out_h + c.oy0 + m / c.cols) * p.out_w + c.ox0 + m % c.cols;
      storeOutput(p, acc[i][j], bias, residual, co, idx, output);
    }
  }
}

// Depthwise conv (C_in / groups == 1; C_out / groups output channels per input channel).
// Shared memory: windows [channels][win area] (one per output channel of the block), then
// weights [channels][kh * kw]. Threads stride over (channel, cell) outputs, cells fastest.
template <typename T>
__global__ void __launch_bounds__(kDepthwiseThreads)
    depthwiseConvKernel(SparseConvParams p, Plan plan,
                        const T* __restrict__ input,         // [N, C_in, H, W]
                        const T* __restrict__ weight,        // [C_out, 1, kh, kw]
                        const T* __restrict__ bias,          // [C_out] or nullptr
                        const T* residual,                   // [N, C_out, H_out, W_out] or nullptr
                        const float* __restrict__ tileMask,  // [N, tilesH, tilesW]
                        T* output) {                         // [N, C_out, H_out, W_out]
  Chunk c;
  if (!activeChunk(p, plan, tileMask, c)) return;

  extern __shared__ float smem[];
  const int32_t khw = p.kernel_h * p.kernel_w;
  const int32_t winArea = c.win_h * c.win_w;
  const int32_t mult = p.out_channels / p.groups;  // output channels per input channel
  const int32_t co0 = blockIdx.z * plan.channels;
  const int32_t count = min(plan.channels, p.out_channels - co0);
  float* window = smem;  // packed with this chunk's window area, <= the largest one
  float* weights = smem + plan.channels * winArea;
  // One window per output channel (output channel co reads input channel co / mult).
  stageWindow(p, c, input, co0, count, mult, window);
  for (int32_t i = threadIdx.x; i < count * khw; i += blockDim.x) weights[i] = toFloat(weight[(int64_t)co0 * khw + i]);
  __syncthreads();

  const int32_t cells = c.rows * c.cols;
  for (int32_t i = threadIdx.x; i < count * cells; i += blockDim.x) {
    const int32_t ch = i / cells, m = i % cells, my = m / c.cols, mx = m % c.cols;
    const float* x = window + ch * winArea + my * p.stride_h * c.win_w + mx * p.stride_w;
    const float* w = weights + ch * khw;
    float acc = 0.f;
    for (int32_t ky = 0; ky < p.kernel_h; ++ky)
      for (int32_t kx = 0; kx < p.kernel_w; ++kx)
        acc = fmaf(w[ky * p.kernel_w + kx], x[ky * p.dilation_h * c.win_w + kx * p.dilation_w], acc);
    const int32_t co = co0 + ch;
    const int64_t idx = (((int64_t)c.n * p.out_channels + co) * p.out_h + c.oy0 + my) * p.out_w + c.ox0 + mx;
    storeOutput(p, acc, bias, residual, co, idx, output);
  }
}

// Fallback for windows that do not fit in shared memory: one thread per (cell, channel), global
// reads only. Grid: x = tile, y = image, z = block of kDirectCoBlock output channels.
template <typename T>
__global__ void __launch_bounds__(kDirectThreads)
    directConvKernel(SparseConvParams p, const T* input, const T* weight, const T* bias, const T* residual,
                     const float* tileMask, T* output) {  // shapes as in gemmConvKernel
  const int32_t tilesW = p.tilesW();
  const int32_t tileIdx = blockIdx.x, n = blockIdx.y;
  if (tileMask[(int64_t)n * p.tilesH() * tilesW + tileIdx] <= 0.5f) return;
  const int32_t oyT = (tileIdx / tilesW) * p.tile, oxT = (tileIdx % tilesW) * p.tile;
  const int64_t cells = (int64_t)p.tile * p.tile;
  for (int64_t i = threadIdx.x; i < cells * kDirectCoBlock; i += blockDim.x) {
    const int32_t co = blockIdx.z * kDirectCoBlock + (int32_t)(i / cells);
    const int32_t oy = oyT + (int32_t)(i % cells) / p.tile, ox = oxT + (int32_t)(i % cells) % p.tile;
    if (co >= p.out_channels || oy >= p.out_h || ox >= p.out_w) continue;
    const float v = convCell(p, input, weight, bias, residual, n, co, oy, ox);
    output[(((int64_t)n * p.out_channels + co) * p.out_h + oy) * p.out_w + ox] = fromFloat<T>(v);
  }
}

// Grid dimension x is limited to 2^31 - 1 blocks, y and z to 65535.
inline bool gridFits(int64_t x, int64_t y, int64_t z) { return x <= INT_MAX && y <= 65535 && z <= 65535; }

template <typename T>
struct Args {
  const T* input;
  const T* weight;
  const T* bias;
  const T* residual;
  const float* mask;
  T* output;
};

template <typename T>
cudaError_t launchDirect(const SparseConvParams& p, const Args<T>& a, cudaStream_t stream) {
  const int64_t tiles = (int64_t)p.tilesH() * p.tilesW();
  const int64_t coBlocks = (p.out_channels + kDirectCoBlock - 1) / kDirectCoBlock;
  if (!gridFits(tiles, p.batch, coBlocks)) return cudaErrorInvalidConfiguration;
  const dim3 grid((unsigned)tiles, (unsigned)p.batch, (unsigned)coBlocks);
  directConvKernel<T><<<grid, kDirectThreads, 0, stream>>>(p, a.input, a.weight, a.bias, a.residual, a.mask, a.output);
  return cudaGetLastError();
}

template <typename T, int kThreadsM, int kThreadsCo, int kTM, int kTC>
cudaError_t launchGemm(const SparseConvParams& p, Plan plan, int64_t chunks, const Args<T>& a, cudaStream_t stream) {
  constexpr int kCoBlock = kThreadsCo * kTC;
  const int64_t khw = (int64_t)p.kernel_h * p.kernel_w;
  const int64_t perChannel = maxWindowArea(p, plan) + khw * (kCoBlock + 1);  // floats per staged input channel
  const int64_t fit = kSmemBudget / (int64_t)sizeof(float) / perChannel;
  const int32_t cinG = p.in_channels / p.groups;
  if (fit < 1) return launchDirect(p, a, stream);
  plan.channels = (int32_t)std::min<int64_t>(std::min<int64_t>(fit, kMaxStageChannels), cinG);
  plan.co_blocks = (p.out_channels / p.groups + kCoBlock - 1) / kCoBlock;
  const int64_t z = (int64_t)p.groups * plan.co_blocks;
  if (!gridFits(chunks, p.batch, z)) return cudaErrorInvalidConfiguration;
  const dim3 grid((unsigned)chunks, (unsigned)p.batch, (unsigned)z);
  const size_t smem = (size_t)(plan.channels * perChannel) * sizeof(float);
  gemmConvKernel<T, kThreadsM, kThreadsCo, kTM, kTC><<<grid, kThreadsM * kThreadsCo, smem, stream>>>(
      p, plan, a.input, a.weight, a.bias, a.residual, a.mask, a.output);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launchDepthwise(const SparseConvParams& p, Plan plan, int64_t chunks, const Args<T>& a,
                            cudaStream_t stream) {
  const int64_t cells = (int64_t)plan.chunk_side * plan.chunk_side;
  const int64_t perChannel = maxWindowArea(p, plan) + (int64_t)p.kernel_h * p.kernel_w;
  const int64_t fit = kSmemBudget / (int64_t)sizeof(float) / perChannel;
  if (fit < 1) return launchDirect(p, a, stream);
  // About 8 outputs per thread: many channels per block when the chunk has few cells.
  const int64_t wanted = std::max<int64_t>(1, 8 * kDepthwiseThreads / cells);
  plan.channels = (int32_t)std::min<int64_t>(std::min<int64_t>(wanted, fit), p.out_channels);
  const int64_t coBlocks = (p.out_channels + plan.channels - 1) / plan.channels;
  if (!gridFits(chunks, p.batch, coBlocks)) return cudaErrorInvalidConfiguration;
  const dim3 grid((unsigned)chunks, (unsigned)p.batch, (unsigned)coBlocks);
  const size_t smem = (size_t)(plan.channels * perChannel) * sizeof(float);
  depthwiseConvKernel<T>
      <<<grid, kDepthwiseThreads, smem, stream>>>(p, plan, a.input, a.weight, a.bias, a.residual, a.mask, a.output);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch(const SparseConvParams& p, const Args<T>& a, cudaStream_t stream) {
  Plan plan{};
  plan.chunk_side = std::min(p.tile, kChunkSide);
  plan.chunks_per_side = (p.tile + plan.chunk_side - 1) / plan.chunk_side;
  const int64_t chunks = (int64_t)p.tilesH() * p.tilesW() * plan.chunks_per_side * plan.chunks_per_side;
  if (p.in_channels == p.groups) return launchDepthwise(p, plan, chunks, a, stream);
  // Register tile by chunk size: kThreadsM * kTM >= cells, kThreadsM * kThreadsCo = 256 threads.
  const int32_t cells = plan.chunk_side * plan.chunk_side;
  if (cells == 1) return launchGemm<T, 1, 256, 1, 1>(p, plan, chunks, a, stream);  // 256 channels x 1 cell
  if (cells <= 4) return launchGemm<T, 4, 64, 1, 2>(p, plan, chunks, a, stream);   // 128 channels x 4 cells
  if (cells <= 16) return launchGemm<T, 8, 32, 2, 2>(p, plan, chunks, a, stream);  // 64 channels x 16 cells
  return launchGemm<T, 16, 16, 4, 4>(p, plan, chunks, a, stream);                  // 64 channels x 64 cells
}

}  // namespace

cudaError_t sparseConv2d(const SparseConvParams& p, DataType dtype, const void* input, const void* weight,
                         const void* bias, const void* residual, const float* tile_mask, void* output,
                         cudaStream_t stream) {
  if (checkSparseConv2d(p) != nullptr) return cudaErrorInvalidValue;  // the same checks as the op and the plugin
  if (p.in_channels == 0) return cudaErrorInvalidValue;         // the launch plans stage >= 1 input channel per step
  if (p.batch == 0 || p.out_channels == 0) return cudaSuccess;  // a 0-block grid would be an error
  if (!input || !weight || !tile_mask || !output) return cudaErrorInvalidValue;
  if (dtype == DataType::kFloat16) {
    const Args<__half> a{static_cast<const __half*>(input),
                         static_cast<const __half*>(weight),
                         static_cast<const __half*>(bias),
                         static_cast<const __half*>(residual),
                         tile_mask,
                         static_cast<__half*>(output)};
    return launch(p, a, stream);
  }
  const Args<float> a{static_cast<const float*>(input),
                      static_cast<const float*>(weight),
                      static_cast<const float*>(bias),
                      static_cast<const float*>(residual),
                      tile_mask,
                      static_cast<float*>(output)};
  return launch(p, a, stream);
}

}  // namespace passrt
