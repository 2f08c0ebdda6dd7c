// passrt's NHWC tile kernels (CPU, float32): the building blocks of the native executor.
//
// Storage is the engine's: an activation of C channels on an H x W map is a row-major
// [H*W, C] array, one row per cell (NHWC; what passrt's FeatureMap keeps as each layer's
// cache). A frame's work is a list of output *cells* (tileCells: the cells of the active
// tiles that lie inside the map, tile by tile), and every kernel works on a range
// [begin, end) of that list. So the caller picks the threads (the PyTorch op splits ranges
// with at::parallel_for) and the GEMM (the op uses ATen, i.e. oneDNN/MKL, on the compact
// [cells, K] x [K, C_out] matrices), and these kernels stay framework-free, like
// passrt_kernels.h. Memory traffic follows the active cells: nothing reads or writes a whole
// map, windows are read straight from the input cache (no patch tensors), and the epilogue
// writes its result straight into the output cache.
//
// Geometry and epilogue come in SparseConvParams (batch 1), the struct the CUDA kernels and
// the TensorRT plugin take; bottom/right padding is implied by out_h/out_w.
#pragma once

#include <cstdint>

#include "passrt_kernels.h"

namespace passrt {

// The output cells (row indices out_y * out_w + out_x) of tiles[0..count) on an out_h x out_w map
// cut into tile x tile tiles (row-major tile ids), cells outside the map left out. `cells` must
// hold count * tile * tile entries; returns how many were written, or -1 if a tile id is outside the grid.
int64_t tileCells(int32_t out_h, int32_t out_w, int32_t tile, const int64_t* tiles, int64_t count, int32_t* cells);

// im2col of the cells [begin, end) for a groups == 1 conv: cols[i] = the cell's window,
// [kernel_h * kernel_w * in_channels] in (ky, kx, c) order, zeros where the window is padding.
// The GEMM with weight [kernel_h * kernel_w * in_channels, out_channels] gives the conv.
void gatherWindowsNhwc(const SparseConvParams& p, const float* input, const int32_t* cells, int64_t begin,
                       int64_t end, float* cols);

// Depthwise conv (groups == in_channels == out_channels) of the cells [begin, end):
// out[i] = conv + bias, [out_channels] per cell; weight is [kernel_h * kernel_w, channels] (tap-major).
void depthwiseNhwc(const SparseConvParams& p, const float* input, const float* weight, const float* bias,
                   const int32_t* cells, int64_t begin, int64_t end, float* out);

// The epilogue of rows y[begin, end) ([channels] each, holding conv + bias):
// act -> + residual[cells[i]] -> post_act (p.act, p.act_alpha, p.post_act). The result goes to
// output[cells[i]] when output is given (the cache write-back), else back into y.
// residual may be output itself (each cell is read before it is written).
void epilogueNhwc(const SparseConvParams& p, int32_t channels, float* y, const float* residual,
                  const int32_t* cells, int64_t begin, int64_t end, float* output);

// A per-channel affine map of the cells [begin, end): output[cells[i]] = input[cells[i]] * scale + shift,
// [channels] each (an input normalisation such as x * 2 - 1, or one of its two steps). Input and output
// are row caches of the same map; they may be the same array.
void affineNhwc(int32_t channels, const float* input, const float* scale, const float* shift, const int32_t* cells,
                int64_t begin, int64_t end, float* output);

// ---- Frame-level change kernels (RegionDrop's per-frame rule, eager CPU) -----------------------
// The rule itself is written once, as traceable tensor ops (passrt/policies/regiondrop.py, noise.py);
// these are its three full-frame operations in one pass each, tested equal to those ops. A frame is
// (C, H, W) float32 with any strides (a decoded frame is often channels-last).
struct FrameView {
  float* data;
  int64_t c_stride, y_stride, x_stride;
};

// For the sampled blocks (every second block row and column lying wholly inside the frame, row-major,
// `cols` per row), the rank-th largest over the block of max over channels |a - others[j]|, for each of
// `count` other frames (out[j * blocks + i], `blocks` sampled blocks in all); blocks [begin, end). The
// other frames are compared block by block, so `a`'s block is read from memory once.
void blockRankChange(int32_t channels, int32_t block, int32_t rank, int64_t cols, FrameView a, const FrameView* others,
                     int32_t count, int64_t blocks, int64_t begin, int64_t end, float* out);

// For the blocks of block rows [begin, end) (ceil(H / block) x ceil(W / block) blocks, edge blocks
// clipped), the number of pixels with max over channels |a - b| > limit, scaled as average pooling with
// ceil_mode scales it: count / (pixels inside the block) * block * block.
void blockChangeCounts(int32_t channels, int32_t h, int32_t w, int32_t block, float limit, FrameView a, FrameView b,
                       int64_t begin, int64_t end, float* counts);

// dst = src inside the blocks with mask > 0.5 (mask [ceil(H / block), ceil(W / block)]), block rows [begin, end).
void copyBlocks(int32_t channels, int32_t h, int32_t w, int32_t block, const float* mask, FrameView src, FrameView dst,
                int64_t begin, int64_t end);

}  // namespace passrt
