// CUDA twins of the NHWC tile kernels (passrt_tiles.h): the GPU side of the native executor's design.
//
// What differs from sparse_conv2d.cu (the NCHW kernels the reviewed plugin uses), and why
// (benchmarks/RESULTS.md, "GPU design from the cost model", prices each choice):
// - Work is a device-side list of active output cells (activeCellsCuda: one launch, one block,
//   a block-wide scan, so the order is tileCells' and the count stays on the device). The conv
//   kernels run a *persistent* grid sized to the GPU (a few blocks per SM), whose blocks stride
//   over the list and read its length on the device: no host sync, no data-dependent launch, and
//   no blocks launched for inactive tiles (the reviewed grid over all tiles paid for every one).
// - A GEMM block takes 64 consecutive cells of the list, whatever tiles they come from, so 1-cell
//   tiles (64 % of SSDLite's MACs) run as real GEMMs, not one GEMV per cell re-reading the weights.
// - The channel block (16, 32 or 64 output channels) is the smallest that covers the layer, so a
//   12-channel head does not leave most threads idle.
// - fp16 on sm_70+ runs on tensor cores (WMMA 16x16x16, fp32 accumulation); fp32, and any dtype on
//   sm_53 (Jetson Nano: no tensor cores), run the same tiles on CUDA cores (guarded by __CUDA_ARCH__).
// - NHWC storage, as the CPU executor's caches: a cell's channels are contiguous, so window rows,
//   weight rows and output rows are coalesced loads/stores. Map rows may be padded (in_stride /
//   out_stride: TensorRT's fp16 kHWC8 rounds C up to 8), so a 12-channel head stays on these kernels.
// - A grouped conv is one GEMM per group over its channel slice of the rows (grid z = the group).
// - A depthwise conv can write compact rows (rows_out) that a 1x1 conv reads back (rows_in): the
//   fused depthwise -> projection pair of MobileNetV2 never writes its wide intermediate to a map.
//
// Aliasing: residual may be output itself (a cell's value is read and written by the same thread);
// output must not overlap input or weight.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

// PASSRT_NO_TENSOR_CORES compiles the CUDA-core path everywhere: how the sm_53 (Nano) path is
// compile-checked with a toolchain that no longer targets sm_53, and an A/B switch on a GPU.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700 && !defined(PASSRT_NO_TENSOR_CORES)
#include <mma.h>
#define PASSRT_HAS_WMMA 1
#else
#define PASSRT_HAS_WMMA 0
#endif

#include "conv_cell.h"
#include "passrt_tiles.h"

namespace passrt {
namespace {

constexpr int kScanThreads = 1024;
constexpr int kGemmThreads = 128;  // 4 warps; each owns 16 rows of the 64-cell block
constexpr int kBM = 64;            // cells per GEMM block
constexpr int kBK = 32;            // reduction slice staged per step
constexpr int kDwThreads = 256;

// ---- device-side compaction ---------------------------------------------------------------------

// Inclusive sum over the block (warp shuffles, then the warp totals); every thread gets its value.
__device__ int blockInclusiveSum(int v, int* warpSums) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 1; o < 32; o <<= 1) {
    const int n = __shfl_up_sync(0xffffffffu, v, o);
    if (lane >= o) v += n;
  }
  if (lane == 31) warpSums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    int w = lane < (int)(blockDim.x >> 5) ? warpSums[lane] : 0;
    for (int o = 1; o < 32; o <<= 1) {
      const int n = __shfl_up_sync(0xffffffffu, w, o);
      if (lane >= o) w += n;
    }
    warpSums[lane] = w;
  }
  __syncthreads();
  const int out = v + (warp > 0 ? warpSums[warp - 1] : 0);
  __syncthreads();  // warpSums is reused by the next call
  return out;
}

// Which tiles are active: every tile of the grid whose mask value is > 0.5 ...
struct MaskTiles {
  const float* mask;  // [tilesH * tilesW]
  int32_t size;
  __device__ int32_t tileAt(int32_t i) const { return mask[i] > 0.5f ? i : -1; }
};
// ... or a list of tile ids (the native executor's int64 ids; the list's length is known on the host).
struct ListedTiles {
  const int64_t* ids;
  int32_t size;
  __device__ int32_t tileAt(int32_t i) const { return (int32_t)ids[i]; }
};

// One block walks the tiles in chunks of kScanThreads: each thread counts its tile's cells inside the
// map (0 when inactive or not a valid id), the scan gives every tile its offset, each thread writes its
// cells. Several blocks would need a second pass (or atomics, which would lose tileCells' order).
template <typename Tiles>
__global__ void __launch_bounds__(kScanThreads)
    activeCellsKernel(int32_t outH, int32_t outW, int32_t tile, Tiles tiles,
                      int32_t* __restrict__ cells,   // [capacity]
                      int32_t* __restrict__ count) {  // [1]
  __shared__ int warpSums[32];
  __shared__ int base;
  if (threadIdx.x == 0) base = 0;
  __syncthreads();
  const int32_t tilesW = (outW + tile - 1) / tile, tilesAll = tilesW * ((outH + tile - 1) / tile);
  for (int32_t t0 = 0; t0 < tiles.size; t0 += blockDim.x) {
    const int32_t i = t0 + threadIdx.x;
    const int32_t t = i < tiles.size ? tiles.tileAt(i) : -1;
    int32_t y0 = 0, x0 = 0, rows = 0, cols = 0;
    if (t >= 0 && t < tilesAll) {
      y0 = (t / tilesW) * tile;
      x0 = (t % tilesW) * tile;
      rows = min(tile, outH - y0);
      cols = min(tile, outW - x0);
    }
    const int n = rows * cols;
    const int end = blockInclusiveSum(n, warpSums);
    int at = base + end - n;
    for (int32_t y = 0; y < rows; ++y)
      for (int32_t x = 0; x < cols; ++x) cells[at++] = (y0 + y) * outW + x0 + x;
    __syncthreads();
    if (threadIdx.x == blockDim.x - 1) base += end;
    __syncthreads();
  }
  if (threadIdx.x == 0) *count = base;
}

// ---- epilogue, shared by both conv kernels ---------------------------------------------------------

// residual rows are resStride apart (a map: cell-indexed), output rows outStride apart (the map's rows,
// or with rowsOut the compact rows of the list, row-indexed).
template <typename T>
__device__ __forceinline__ void finish(const SparseConvParams& p, float v, const T* residual, int64_t resStride,
                                       int32_t cell, int32_t row, int32_t c, T* output, int64_t outStride,
                                       bool rowsOut) {
  v = activate(p.act, p.act_alpha, v);
  if (residual) v += toFloat(residual[(int64_t)cell * resStride + c]);
  v = activate(p.post_act, p.act_alpha, v);
  output[(int64_t)(rowsOut ? row : cell) * outStride + c] = fromFloat<T>(v);
}

// ---- groups == 1 convs as GEMMs over 64-cell blocks of the list ------------------------------------

// The A operand's element (cell row m of the block, reduction index k), read from the map (an implicit
// im2col in (ky, kx, c) order, c < cin: this group's channels) or from compact rows; 0 outside the list,
// the map or K. Input rows are inStride apart.
template <typename T>
__device__ __forceinline__ float loadA(const SparseConvParams& p, const T* __restrict__ input, bool rowsIn,
                                       int32_t cin, int64_t inStride, const int32_t* __restrict__ cells, int32_t row,
                                       int32_t count, int32_t k, int32_t kTotal) {
  if (row >= count || k >= kTotal) return 0.f;
  if (rowsIn) return toFloat(input[(int64_t)row * inStride + k]);
  const int32_t c = k % cin, tap = k / cin;
  const int32_t ky = tap / p.kernel_w, kx = tap % p.kernel_w;
  const int32_t cell = cells[row];
  const int32_t iy = (cell / p.out_w) * p.stride_h - p.pad_top + ky * p.dilation_h;
  const int32_t ix = (cell % p.out_w) * p.stride_w - p.pad_left + kx * p.dilation_w;
  if (iy < 0 || iy >= p.in_h || ix < 0 || ix >= p.in_w) return 0.f;  // zero padding
  return toFloat(input[((int64_t)iy * p.in_w + ix) * inStride + c]);
}

// Grid: x = persistent blocks striding over 64-cell blocks, y = output channel blocks of kBN (within a
// group), z = the group: its slice of the input rows, its weight block, its slice of the output rows.
// Shared: A [kBM][kBK + 8] and B [kBK][kBN + 8] in T (half: the WMMA operands; padded against bank
// conflicts), C [kBM][kBN + 4] float for the epilogue.
template <typename T, int kBN, bool kTensorCores>
__global__ void __launch_bounds__(kGemmThreads)
    convCellsKernel(SparseConvParams p, const T* __restrict__ input,  // [H*W, in_stride] or rows [capacity, C_in]
                    bool rowsIn,
                    const T* __restrict__ weight,        // [groups][kh*kw*C_in/groups][C_out/groups]
                    const float* __restrict__ bias,      // [C_out] or nullptr
                    const T* residual,                   // [H_out*W_out, out_stride] or nullptr (may be output)
                    const int32_t* __restrict__ cells,   // [capacity]
                    const int32_t* __restrict__ count,   // [1], read on the device
                    T* output, bool rowsOut) {           // [H_out*W_out, out_stride] or rows [capacity, C_out]
  constexpr int kLdA = kBK + 8, kLdB = kBN + 8, kLdC = kBN + 4;
  __shared__ __align__(32) T sA[kBM * kLdA];
  __shared__ __align__(32) T sB[kBK * kLdB];
  __shared__ __align__(32) float sC[kBM * kLdC];
  const int32_t n = *count;
  const int32_t cin = p.in_channels / p.groups, cout = p.out_channels / p.groups, g = blockIdx.z;
  const int64_t inStride = rowsIn ? p.in_channels : p.inStride(), resStride = p.outStride();
  const int64_t outStride = rowsOut ? p.out_channels : p.outStride();
  const int32_t kTotal = p.kernel_h * p.kernel_w * cin;
  input += (int64_t)g * cin;  // this group's channel slice of every row, and its weight block
  weight += (int64_t)g * kTotal * cout;
  if (bias) bias += (int64_t)g * cout;
  if (residual) residual += (int64_t)g * cout;
  output += (int64_t)g * cout;
  const int32_t n0 = blockIdx.y * kBN;
  for (int32_t m0 = blockIdx.x * kBM; m0 < n; m0 += gridDim.x * kBM) {
#if PASSRT_HAS_WMMA
    constexpr bool kMma = kTensorCores;
#else
    constexpr bool kMma = false;
#endif
    // SIMT accumulators: thread t owns cell t % kBM and channels (t / kBM) + 2j.
    float acc[kBN / 2];
#pragma unroll
    for (int j = 0; j < kBN / 2; ++j) acc[j] = 0.f;
#if PASSRT_HAS_WMMA
    namespace wmma = nvcuda::wmma;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag[kBN / 16];
    if (kMma) {
#pragma unroll
      for (int j = 0; j < kBN / 16; ++j) wmma::fill_fragment(frag[j], 0.f);
    }
#endif
    for (int32_t k0 = 0; k0 < kTotal; k0 += kBK) {
      for (int32_t i = threadIdx.x; i < kBM * kBK; i += blockDim.x) {  // consecutive threads: consecutive k
        const int32_t m = i / kBK, kk = i % kBK;
        sA[m * kLdA + kk] = fromFloat<T>(loadA(p, input, rowsIn, cin, inStride, cells, m0 + m, n, k0 + kk, kTotal));
      }
      for (int32_t i = threadIdx.x; i < kBK * kBN; i += blockDim.x) {  // consecutive threads: consecutive co
        const int32_t kk = i / kBN, c = i % kBN;
        const bool ok = k0 + kk < kTotal && n0 + c < cout;
        sB[kk * kLdB + c] = fromFloat<T>(ok ? toFloat(weight[(int64_t)(k0 + kk) * cout + n0 + c]) : 0.f);
      }
      __syncthreads();
      if (kMma) {
#if PASSRT_HAS_WMMA
        const int warp = threadIdx.x >> 5;
#pragma unroll
        for (int kk = 0; kk < kBK; kk += 16) {
          wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::row_major> a;
          wmma::load_matrix_sync(a, reinterpret_cast<const __half*>(sA) + warp * 16 * kLdA + kk, kLdA);
#pragma unroll
          for (int j = 0; j < kBN / 16; ++j) {
            wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b;
            wmma::load_matrix_sync(b, reinterpret_cast<const __half*>(sB) + kk * kLdB + j * 16, kLdB);
            wmma::mma_sync(frag[j], a, b, frag[j]);
          }
        }
#endif
      } else {
        const int32_t m = threadIdx.x % kBM, c0 = threadIdx.x / kBM;
        for (int32_t kk = 0; kk < kBK; ++kk) {
          const float a = toFloat(sA[m * kLdA + kk]);
#pragma unroll
          for (int j = 0; j < kBN / 2; ++j) acc[j] = fmaf(a, toFloat(sB[kk * kLdB + c0 + 2 * j]), acc[j]);
        }
      }
      __syncthreads();  // the next slice overwrites sA and sB
    }
    if (kMma) {
#if PASSRT_HAS_WMMA
      const int warp = threadIdx.x >> 5;
#pragma unroll
      for (int j = 0; j < kBN / 16; ++j)
        wmma::store_matrix_sync(sC + warp * 16 * kLdC + j * 16, frag[j], kLdC, wmma::mem_row_major);
#endif
    } else {
      const int32_t m = threadIdx.x % kBM, c0 = threadIdx.x / kBM;
#pragma unroll
      for (int j = 0; j < kBN / 2; ++j) sC[m * kLdC + c0 + 2 * j] = acc[j];
    }
    __syncthreads();
    for (int32_t i = threadIdx.x; i < kBM * kBN; i += blockDim.x) {  // consecutive threads: one row's channels
      const int32_t m = i / kBN, c = i % kBN, row = m0 + m, co = n0 + c;
      if (row >= n || co >= cout) continue;
      const int32_t cell = cells[row];
      finish(p, sC[m * kLdC + c] + (bias ? bias[co] : 0.f), residual, resStride, cell, row, co, output, outStride,
             rowsOut);
    }
    __syncthreads();  // sC is rewritten by the next block of cells
  }
}

// ---- depthwise -------------------------------------------------------------------------------------

// One thread per (cell of the list, channel), channels fastest (coalesced NHWC rows); a persistent grid.
template <typename T>
__global__ void __launch_bounds__(kDwThreads)
    depthwiseCellsKernel(SparseConvParams p, const T* __restrict__ input,  // [H*W, in_stride]
                         const T* __restrict__ weight,                     // [kh*kw, C]
                         const float* __restrict__ bias,                   // [C] or nullptr
                         const T* residual,                                // [H_out*W_out, out_stride] or nullptr
                         const int32_t* __restrict__ cells, const int32_t* __restrict__ count,
                         T* output, bool rowsOut) {  // [H_out*W_out, out_stride] or rows [capacity, C]
  const int32_t channels = p.out_channels;
  const int64_t inStride = p.inStride(), resStride = p.outStride(), outStride = rowsOut ? channels : resStride;
  const int64_t total = (int64_t)(*count) * channels;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int32_t row = (int32_t)(e / channels), c = (int32_t)(e % channels);
    const int32_t cell = cells[row];
    const int32_t oy = cell / p.out_w, ox = cell % p.out_w;
    float acc = bias ? bias[c] : 0.f;
    for (int32_t ky = 0; ky < p.kernel_h; ++ky) {
      const int32_t iy = oy * p.stride_h - p.pad_top + ky * p.dilation_h;
      if (iy < 0 || iy >= p.in_h) continue;
      for (int32_t kx = 0; kx < p.kernel_w; ++kx) {
        const int32_t ix = ox * p.stride_w - p.pad_left + kx * p.dilation_w;
        if (ix < 0 || ix >= p.in_w) continue;
        acc = fmaf(toFloat(input[((int64_t)iy * p.in_w + ix) * inStride + c]),
                   toFloat(weight[(ky * p.kernel_w + kx) * channels + c]), acc);
      }
    }
    finish(p, acc, residual, resStride, cell, row, c, output, outStride, rowsOut);
  }
}

// One thread per (cell of the list, channel), as the depthwise kernel. input may be output (in place).
template <typename T>
__global__ void affineCellsKernel(int32_t channels, const T* input, const float* __restrict__ scale,
                                  const float* __restrict__ shift, const int32_t* __restrict__ cells,
                                  const int32_t* __restrict__ count, T* output) {
  const int64_t total = (int64_t)(*count) * channels;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const int32_t c = (int32_t)(e % channels);
    const int64_t i = (int64_t)cells[e / channels] * channels + c;
    output[i] = fromFloat<T>(toFloat(input[i]) * scale[c] + shift[c]);
  }
}

// ---- weight layout (the plugin's ONNX weights) --------------------------------------------------

__host__ __device__ inline bool depthwiseParams(const SparseConvParams& p) {
  return p.groups > 1 && p.groups == p.in_channels && p.in_channels == p.out_channels;
}

// One thread per element of the output layout (rows (tap, c), output channel fastest: coalesced writes).
// Depthwise: [tap][C]. Otherwise [group][tap * cin + c][co within the group] (groups 1: one block).
template <typename T>
__global__ void kernelLayoutKernel(SparseConvParams p, const T* __restrict__ w, const T* __restrict__ bias,
                                   T* __restrict__ wOut, float* __restrict__ bOut) {
  const int32_t taps = p.kernel_h * p.kernel_w;
  const bool dw = depthwiseParams(p);
  const int32_t cin = p.in_channels / p.groups;               // OIHW's I: 1 for depthwise
  const int32_t cout = dw ? p.out_channels : p.out_channels / p.groups;  // a row's width in the layout
  const int64_t rows = (int64_t)taps * (dw ? 1 : cin);        // rows per block (one block: depthwise)
  const int64_t n = (int64_t)taps * cin * p.out_channels;
  const int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
    const int32_t col = (int32_t)(i % cout);
    const int64_t r = i / cout;
    const int32_t g = (int32_t)(r / rows), row = (int32_t)(r % rows);
    const int32_t c = row % cin, tap = row / cin;
    const int64_t co = (int64_t)g * cout + col;  // depthwise: g is 0 and col the channel
    wOut[i] = w[(co * cin + c) * taps + tap];  // OIHW: [co][c][ky][kx], tap = ky * kernel_w + kx
  }
  for (int64_t co = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; co < p.out_channels; co += step) {
    bOut[co] = bias ? toFloat(bias[co]) : 0.f;
  }
}

// ---- launch ----------------------------------------------------------------------------------------

// Blocks of a persistent grid: enough to fill the GPU (perSm per SM), never more than the work could use.
int32_t persistentBlocks(int64_t workBlocks, int32_t perSm) {
  int device = 0, sms = 1;
  if (cudaGetDevice(&device) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) !=
                                                   cudaSuccess) {
    sms = 1;
  }
  return (int32_t)std::max<int64_t>(1, std::min<int64_t>(workBlocks, (int64_t)sms * perSm));
}

const char* checkCells(const SparseConvParams& p, const CellRange& cells) {
  if (const char* e = checkSparseConv2d(p)) return e;
  if (p.batch != 1) return "the NHWC tile kernels take batch 1";
  if (!cells.cells || !cells.count || cells.capacity < 0) return "cells, count and capacity are required";
  return nullptr;
}

template <typename T, int kBN>
cudaError_t launchConv(const SparseConvParams& p, const T* input, bool rowsIn, const T* weight, const float* bias,
                       const T* residual, CellRange cells, T* output, bool rowsOut, cudaStream_t stream) {
  const int64_t cellBlocks = (cells.capacity + kBM - 1) / kBM;
  const int32_t coBlocks = (p.out_channels / p.groups + kBN - 1) / kBN;
  const dim3 grid((unsigned)persistentBlocks(cellBlocks, 4), (unsigned)coBlocks, (unsigned)p.groups);
  constexpr bool kTc = sizeof(T) == 2;  // fp16: tensor cores where the device has them (PASSRT_HAS_WMMA)
  convCellsKernel<T, kBN, kTc>
      <<<grid, kGemmThreads, 0, stream>>>(p, input, rowsIn, weight, bias, residual, cells.cells, cells.count, output,
                                          rowsOut);
  return cudaGetLastError();
}

template <typename T>
cudaError_t convCells(const SparseConvParams& p, const void* input, bool rowsIn, const void* weight, const float* bias,
                      const void* residual, CellRange cells, void* output, bool rowsOut, cudaStream_t stream) {
  const auto* in = static_cast<const T*>(input);
  const auto* w = static_cast<const T*>(weight);
  const auto* res = static_cast<const T*>(residual);
  auto* out = static_cast<T*>(output);
  const int32_t cout = p.out_channels / p.groups;  // the channel block covers one group's outputs
  if (cout <= 16) return launchConv<T, 16>(p, in, rowsIn, w, bias, res, cells, out, rowsOut, stream);
  if (cout <= 32) return launchConv<T, 32>(p, in, rowsIn, w, bias, res, cells, out, rowsOut, stream);
  return launchConv<T, 64>(p, in, rowsIn, w, bias, res, cells, out, rowsOut, stream);
}

}  // namespace

cudaError_t activeCellsCuda(int32_t out_h, int32_t out_w, int32_t tile, const float* tile_mask, int32_t* cells,
                            int32_t* count, cudaStream_t stream) {
  if (out_h < 1 || out_w < 1 || tile < 1 || !tile_mask || !cells || !count) return cudaErrorInvalidValue;
  const int32_t tiles = ((out_h + tile - 1) / tile) * ((out_w + tile - 1) / tile);
  activeCellsKernel<<<1, kScanThreads, 0, stream>>>(out_h, out_w, tile, MaskTiles{tile_mask, tiles}, cells, count);
  return cudaGetLastError();
}

cudaError_t tileCellsCuda(int32_t out_h, int32_t out_w, int32_t tile, const int64_t* tiles, int32_t tile_count,
                          int32_t* cells, int32_t* count, cudaStream_t stream) {
  if (out_h < 1 || out_w < 1 || tile < 1 || tile_count < 0 || (tile_count && !tiles) || !cells || !count) {
    return cudaErrorInvalidValue;
  }
  activeCellsKernel<<<1, kScanThreads, 0, stream>>>(out_h, out_w, tile, ListedTiles{tiles, tile_count}, cells, count);
  return cudaGetLastError();
}

cudaError_t convCellsNhwcCuda(const SparseConvParams& p, DataType dtype, const void* input, bool rows_in,
                              const void* weight, const float* bias, const void* residual, CellRange cells,
                              void* output, bool rows_out, cudaStream_t stream) {
  if (checkCells(p, cells) || p.groups > 65535 || !input || !weight || !output) return cudaErrorInvalidValue;
  if (rows_in && (p.kernel_h != 1 || p.kernel_w != 1 || p.stride_h != 1 || p.stride_w != 1)) {
    return cudaErrorInvalidValue;  // compact rows are one input row per output cell: a 1x1 stride-1 conv
  }
  if (cells.capacity == 0 || p.out_channels == 0) return cudaSuccess;
  return dtype == DataType::kFloat16
             ? convCells<__half>(p, input, rows_in, weight, bias, residual, cells, output, rows_out, stream)
             : convCells<float>(p, input, rows_in, weight, bias, residual, cells, output, rows_out, stream);
}

cudaError_t affineCellsNhwcCuda(int32_t channels, DataType dtype, const void* input, const float* scale,
                                const float* shift, CellRange cells, void* output, cudaStream_t stream) {
  if (channels < 1 || !input || !scale || !shift || !output || !cells.cells || !cells.count || cells.capacity < 0) {
    return cudaErrorInvalidValue;
  }
  if (cells.capacity == 0) return cudaSuccess;
  const unsigned blocks =
      (unsigned)persistentBlocks(((int64_t)cells.capacity * channels + kDwThreads - 1) / kDwThreads, 8);
  if (dtype == DataType::kFloat16) {
    affineCellsKernel<__half><<<blocks, kDwThreads, 0, stream>>>(channels, static_cast<const __half*>(input), scale,
                                                                 shift, cells.cells, cells.count,
                                                                 static_cast<__half*>(output));
  } else {
    affineCellsKernel<float><<<blocks, kDwThreads, 0, stream>>>(channels, static_cast<const float*>(input), scale,
                                                                shift, cells.cells, cells.count,
                                                                static_cast<float*>(output));
  }
  return cudaGetLastError();
}

cudaError_t kernelLayoutCuda(const SparseConvParams& p, DataType dtype, const void* weight_oihw, const void* bias,
                             void* weight_out, float* bias_out, cudaStream_t stream) {
  if (checkSparseConv2d(p) || !weight_oihw || !weight_out || !bias_out) return cudaErrorInvalidValue;
  const int64_t n = (int64_t)p.kernel_h * p.kernel_w * (p.in_channels / p.groups) * p.out_channels;
  const unsigned blocks = (unsigned)persistentBlocks((std::max<int64_t>(n, p.out_channels) + 255) / 256, 4);
  if (dtype == DataType::kFloat16) {
    kernelLayoutKernel<__half><<<blocks, 256, 0, stream>>>(p, static_cast<const __half*>(weight_oihw),
                                                           static_cast<const __half*>(bias),
                                                           static_cast<__half*>(weight_out), bias_out);
  } else {
    kernelLayoutKernel<float><<<blocks, 256, 0, stream>>>(p, static_cast<const float*>(weight_oihw),
                                                          static_cast<const float*>(bias),
                                                          static_cast<float*>(weight_out), bias_out);
  }
  return cudaGetLastError();
}

cudaError_t depthwiseCellsNhwcCuda(const SparseConvParams& p, DataType dtype, const void* input, const void* weight,
                                   const float* bias, const void* residual, CellRange cells, void* output,
                                   bool rows_out, cudaStream_t stream) {
  if (checkCells(p, cells) || p.groups != p.in_channels || p.in_channels != p.out_channels || !input || !weight ||
      !output) {
    return cudaErrorInvalidValue;
  }
  if (cells.capacity == 0 || p.out_channels == 0) return cudaSuccess;
  const int64_t work = ((int64_t)cells.capacity * p.out_channels + kDwThreads - 1) / kDwThreads;
  const unsigned blocks = (unsigned)persistentBlocks(work, 8);
  if (dtype == DataType::kFloat16) {
    depthwiseCellsKernel<__half><<<blocks, kDwThreads, 0, stream>>>(
        p, static_cast<const __half*>(input), static_cast<const __half*>(weight), bias,
        static_cast<const __half*>(residual), cells.cells, cells.count, static_cast<__half*>(output), rows_out);
  } else {
    depthwiseCellsKernel<float><<<blocks, kDwThreads, 0, stream>>>(
        p, static_cast<const float*>(input), static_cast<const float*>(weight), bias,
        static_cast<const float*>(residual), cells.cells, cells.count, static_cast<float*>(output), rows_out);
  }
  return cudaGetLastError();
}

}  // namespace passrt
