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
//
// Row strides (SparseConvParams::in_stride / out_stride, 0 = packed): a map's cell rows may be longer
// than its channels. The input map's rows are in_stride apart, the output's and the residual's
// out_stride apart (TensorRT's fp16 kHWC8 pads C to a multiple of 8; the padding is never read or
// written). Compact per-cell rows (cols, depthwise's `out`, epilogue's `y`, the CUDA kernels' rows_in /
// rows_out) stay packed. The same strides make a grouped conv G groups-1 convs over channel slices:
// groupSlice() below gives one group's parameters, and the caller offsets the input, output and
// residual pointers by g * its channels (the CUDA GEMM does this itself, one grid slice per group).
//
// Several streams in one call (batched execution across streams, passrt/engine/batched.py): each
// stream's map is a block of rows in one array, stream b's block starting at row b * map rows (a
// FeatureMap keeps H*W cells plus spare rows, so a block may be longer than the map). A tile id is then
// b * tilesH * tilesW + the tile's id in its map, and a cell id b * out_rows + out_y * out_w + out_x: the
// epilogue and the affine map index rows by cell id unchanged; tileCells, gatherWindowsNhwc and
// depthwiseNhwc take the blocks' lengths (in_rows, out_rows; 0: one stream, the default).
#pragma once

#include <cstdint>

#include "passrt_kernels.h"

namespace passrt {

// The output cells (row indices out_y * out_w + out_x) of tiles[0..count) on an out_h x out_w map
// cut into tile x tile tiles (row-major tile ids), cells outside the map left out. `cells` must
// hold count * tile * tile entries; returns how many were written, or -1 if a tile id is outside the grid
// (of `batch` streams' maps, out_rows rows each: see above).
int64_t tileCells(int32_t out_h, int32_t out_w, int32_t tile, const int64_t* tiles, int64_t count, int32_t* cells,
                  int32_t batch = 1, int64_t out_rows = 0);

// One group of a grouped conv (groups > 1, not depthwise) as a groups == 1 conv: in_channels / groups
// inputs and out_channels / groups outputs, over the whole rows' strides (the caller offsets the
// pointers to group g's channels: input + g * in_channels / groups, output and residual +
// g * out_channels / groups). p itself when groups == 1.
inline SparseConvParams groupSlice(const SparseConvParams& p) {
  SparseConvParams q = p;
  if (p.groups <= 1) return q;
  q.in_stride = p.inStride();
  q.out_stride = p.outStride();
  q.in_channels = p.in_channels / p.groups;
  q.out_channels = p.out_channels / p.groups;
  q.groups = 1;
  return q;
}

// im2col of the cells [begin, end) for a groups == 1 conv: cols[i] = the cell's window,
// [kernel_h * kernel_w * in_channels] in (ky, kx, c) order, zeros where the window is padding.
// The GEMM with weight [kernel_h * kernel_w * in_channels, out_channels] gives the conv. Input rows
// in_stride apart (a stacked stream's block: in_rows rows).
void gatherWindowsNhwc(const SparseConvParams& p, const float* input, const int32_t* cells, int64_t begin,
                       int64_t end, float* cols, int64_t in_rows = 0, int64_t out_rows = 0);

// Depthwise conv (groups == in_channels == out_channels) of the cells [begin, end):
// out[i] = conv + bias, [out_channels] per cell (packed); weight is [kernel_h * kernel_w, channels]
// (tap-major); input rows in_stride apart.
void depthwiseNhwc(const SparseConvParams& p, const float* input, const float* weight, const float* bias,
                   const int32_t* cells, int64_t begin, int64_t end, float* out, int64_t in_rows = 0,
                   int64_t out_rows = 0);

// The epilogue of rows y[begin, end) ([channels] each, holding the conv):
// + bias (when given) -> act -> + residual[cells[i]] -> post_act (p.act, p.act_alpha, p.post_act). The bias
// is added here, where each row passes anyway, rather than by a GEMM that starts from the bias broadcast to
// every row (one more write of the rows, and one more op call). The result goes to
// output[cells[i]] when output is given (the cache write-back), else back into y. y is packed
// ([channels] per row); residual and output rows are p.out_stride apart (0: channels, packed).
// residual may be output itself (each cell is read before it is written).
void epilogueNhwc(const SparseConvParams& p, int32_t channels, float* y, const float* bias, const float* residual,
                  const int32_t* cells, int64_t begin, int64_t end, float* output);

// A per-channel affine map of the cells [begin, end): output[cells[i]] = input[cells[i]] * scale + shift,
// [channels] each (an input normalisation such as x * 2 - 1, or one of its two steps). Input and output
// are row caches of the same map; they may be the same array.
void affineNhwc(int32_t channels, const float* input, const float* scale, const float* shift, const int32_t* cells,
                int64_t begin, int64_t end, float* output);

// ---- Frame-level change kernels (RegionDrop's per-frame rule, eager CPU) -----------------------
// The rule itself is written once, as traceable tensor ops (passrt/policies/regiondrop.py, noise.py);
// these are its full-frame operations (and exact's) in one pass each, tested equal to those ops. A frame is
// (C, H, W) float32 with any strides (a decoded frame is often channels-last).
struct FrameView {
  float* data;
  int64_t c_stride, y_stride, x_stride;
};

// For the sampled blocks (every second block row and column lying wholly inside the frame, row-major,
// `cols` per row), the rank-th largest over the block of max over channels |a - others[j]|, for each of
// `count` other frames (out[j * blocks + i], `blocks` sampled blocks in all); sampled block rows [begin, end).
void blockRankChange(int32_t channels, int32_t block, int32_t rank, int64_t cols, FrameView a, const FrameView* others,
                     int32_t count, int64_t blocks, int64_t begin, int64_t end, float* out);

// For the blocks of block rows [begin, end) (ceil(H / block) x ceil(W / block) blocks, edge blocks
// clipped), the number of pixels with max over channels |a - b| > limit, scaled as average pooling with
// ceil_mode scales it: count / (pixels inside the block) * block * block.
void blockChangeCounts(int32_t channels, int32_t h, int32_t w, int32_t block, float limit, FrameView a, FrameView b,
                       int64_t begin, int64_t end, float* counts);

// PASS's common gate (passrt/policies/common_gate.py): per block (block rows [begin, end), edge blocks
// clipped, averages over the pixels inside the block as average pooling with ceil_mode takes them), from
// d = max over channels |a - b|: the share of pixels with d > limits[k] for k < count, the mean and the
// max of d, and the mean of each channel of a, then of b. out is [count + 2 + 2 * channels, blocks].
void blockFeatures(int32_t channels, int32_t h, int32_t w, int32_t block, const float* limits, int32_t count,
                   FrameView a, FrameView b, int64_t begin, int64_t end, float* out);

// exact's per-pixel rule, rows [begin, end): changed[y * w + x] = 1 where max over channels |a - ref| > limit,
// else 0; and ref = a at those pixels (the reference moves only where a change was found).
void pixelChanges(int32_t channels, int32_t w, float limit, FrameView a, FrameView ref, int64_t begin, int64_t end,
                  float* changed);

// layerwise's per-layer test on NHWC row caches, listed rows [begin, end): own[r] = 1 where max over channels
// |src[r] - ref[r]| > threshold (and ref[r] = src[r] there), for r = rows[i]; other entries of own untouched.
void rowChanges(int32_t channels, float threshold, const float* src, float* ref, const int64_t* rows, int64_t begin,
                int64_t end, float* own);

// dst = src inside the blocks with mask > 0.5 (mask [ceil(H / block), ceil(W / block)]), block rows [begin, end).
void copyBlocks(int32_t channels, int32_t h, int32_t w, int32_t block, const float* mask, FrameView src, FrameView dst,
                int64_t begin, int64_t end);

// ---- CUDA twins (tiles_nhwc.cu): the same storage and cell lists, on the device ---------------
// The list of active cells is built on the device and its length stays there: every launch is
// sized by `capacity` (a persistent grid whose blocks stride over the list and stop at *count),
// so nothing waits for the host and a frame can be captured in a CUDA graph or run in TensorRT.
// Batch 1; fp32 or fp16 storage (`dtype`), fp32 accumulation; bias is fp32. Tested against the
// CPU functions above by tests/native/twins_test.cu.

// The output cells of the tiles with tile_mask > 0.5 (tile_mask [tilesH * tilesW], row-major), in
// tileCells' order, into cells (capacity tilesH * tilesW * tile * tile); *count = how many.
cudaError_t activeCellsCuda(int32_t out_h, int32_t out_w, int32_t tile, const float* tile_mask, int32_t* cells,
                            int32_t* count, cudaStream_t stream);

// The same from a device list of tile ids (tileCells on the device). Ids outside the grid are skipped:
// the CPU function returns -1 for them, but a device-side error would need a host sync to be seen.
cudaError_t tileCellsCuda(int32_t out_h, int32_t out_w, int32_t tile, const int64_t* tiles, int32_t tile_count,
                          int32_t* cells, int32_t* count, cudaStream_t stream);

// Where a kernel's work is: device pointers to the cell list and its length, and the list's capacity.
struct CellRange {
  const int32_t* cells;  // [capacity] output cell ids (out_y * out_w + out_x)
  const int32_t* count;  // [1] how many are valid, read on the device
  int32_t capacity;
};

// A conv + bias -> act -> + residual[cell] -> post_act on the listed cells: the CUDA twin of
// gatherWindowsNhwc + GEMM + epilogueNhwc (per groupSlice() for groups > 1). input: the map
// [in_h * in_w, rows in_stride apart], or with rows_in compact rows [capacity, in_channels] (only for
// 1x1 stride-1 convs: the projection after a depthwise conv that wrote rows). weight
// [groups][kernel_h * kernel_w * in_channels / groups][out_channels / groups], each group's GEMM operand
// of gatherWindowsNhwc's columns (groups 1: [kernel_h * kernel_w * in_channels, out_channels]).
// residual [out_h * out_w, rows out_stride apart] or null (may be output). Result to output[cell]
// (rows out_stride apart), or with rows_out to row i ([capacity, out_channels], packed). Any groups
// (a depthwise conv runs faster in depthwiseCellsNhwcCuda). fp16 runs on tensor cores on sm_70+, on
// CUDA cores below.
cudaError_t convCellsNhwcCuda(const SparseConvParams& p, DataType dtype, const void* input, bool rows_in,
                              const void* weight, const float* bias, const void* residual, CellRange cells,
                              void* output, bool rows_out, cudaStream_t stream);

// A depthwise conv (groups == in_channels == out_channels) + epilogue on the listed cells: the CUDA
// twin of depthwiseNhwc + epilogueNhwc. weight [kernel_h * kernel_w, channels] (tap-major); input rows
// in_stride apart, residual and output rows out_stride apart (rows_out: packed).
cudaError_t depthwiseCellsNhwcCuda(const SparseConvParams& p, DataType dtype, const void* input, const void* weight,
                                   const float* bias, const void* residual, CellRange cells, void* output,
                                   bool rows_out, cudaStream_t stream);

// A per-channel affine map of the listed cells: the CUDA twin of affineNhwc. input and output are row
// caches [cells, channels] of the same map (they may be the same array); scale and shift [channels] fp32.
cudaError_t affineCellsNhwcCuda(int32_t channels, DataType dtype, const void* input, const float* scale,
                                const float* shift, CellRange cells, void* output, cudaStream_t stream);

// A conv's ONNX weight and bias in the layouts above, on the device (the TensorRT plugin's inputs are
// the ONNX initializers): weight_oihw [out_channels, in_channels / groups, kernel_h, kernel_w] ->
// weight_out [groups][kernel_h * kernel_w * in_channels / groups][out_channels / groups] (rows in
// (ky, kx, c) order; groups 1: [kernel_h * kernel_w * in_channels, out_channels]) or
// [kernel_h * kernel_w, channels] (depthwise); bias [out_channels] in `dtype` (null: zeros) -> bias_out
// in float32. The CUDA twin of passrt.kernels.native.kernel_weight (which has groups 1 and depthwise).
cudaError_t kernelLayoutCuda(const SparseConvParams& p, DataType dtype, const void* weight_oihw, const void* bias,
                             void* weight_out, float* bias_out, cudaStream_t stream);

}  // namespace passrt
