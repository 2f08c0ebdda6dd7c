// passrt tile kernels: one framework-free API for every consumer.
//
// The PyTorch op (passrt/csrc) and the TensorRT plugin (plugins/tensorrt) are thin adapters
// over these functions: they know nothing of PyTorch or TensorRT, take plain parameters,
// raw pointers and a stream, never allocate and never synchronise. Launches cover a fixed
// grid of all tiles and inactive tiles exit early, so there are no data-dependent shapes:
// the calls are safe inside CUDA graphs and TensorRT engines.
//
// Layout: dense NCHW, batch N, one tile mask per image. A *tile* is a tile x tile block of
// output cells; tiles overhang the bottom/right edge when tile does not divide the output
// size (cells outside are simply not written). Tile masks are float 0/1 (what the Python
// engine and the exported ONNX mask ops produce): a value > 0.5 means active. There are no
// mask kernels: masks are standard tensor ops, which is what exports to ONNX.
//
// Every CUDA entry point has a CPU twin with the same arguments minus the stream (suffix
// Cpu, float32 only): the reference for the CUDA tests and the PyTorch op's CPU kernel.
#pragma once

#include <cstdint>

#ifdef __CUDACC__
#include <cuda_runtime.h>
#else
#if __has_include(<cuda_runtime_api.h>)
#include <cuda_runtime_api.h>
#else
typedef struct CUstream_st* cudaStream_t;
typedef int cudaError_t;
#endif
#endif

#ifdef __CUDACC__
#define PASSRT_HOST_DEVICE __host__ __device__
#else
#define PASSRT_HOST_DEVICE
#endif

namespace passrt {

// Activation fused into the conv epilogue (applied before the residual add, as in a
// MobileNetV2 block; ResNet-style "add then ReLU" uses post_act).
enum class Activation : int32_t {
  kNone = 0,
  kRelu = 1,
  kRelu6 = 2,
  kHardSwish = 3,
  kSilu = 4,
  kSigmoid = 5,
  kLeakyRelu = 6,  // uses act_alpha
};

enum class DataType : int32_t { kFloat32 = 0, kFloat16 = 1 };

// Geometry and epilogue of one sparse convolution. Everything the kernel needs, nothing else.
struct SparseConvParams {
  int32_t batch;            // N
  int32_t in_channels;      // C_in
  int32_t in_h, in_w;       // H, W
  int32_t out_channels;     // C_out
  int32_t out_h, out_w;     // H_out, W_out
  int32_t kernel_h, kernel_w;
  int32_t stride_h, stride_w;
  int32_t dilation_h, dilation_w;
  int32_t pad_top, pad_left;  // bottom/right padding is implied by out_h/out_w (TF 'SAME' is asymmetric)
  int32_t groups;
  int32_t tile;             // output cells per tile side
  Activation act;
  float act_alpha;          // LeakyReLU slope
  Activation post_act;      // applied after the residual add (kNone for MobileNetV2 blocks)

  PASSRT_HOST_DEVICE int32_t tilesH() const { return (out_h + tile - 1) / tile; }
  PASSRT_HOST_DEVICE int32_t tilesW() const { return (out_w + tile - 1) / tile; }
};

// Recompute conv + bias -> act -> (+ residual) -> post_act on the tiles where
// tile_mask[n][th][tw] != 0 and write them into `output`; other tiles keep their values.
//   input    [N, C_in, H, W]
//   weight   [C_out, C_in / groups, kernel_h, kernel_w]
//   bias     [C_out] or nullptr
//   residual [N, C_out, H_out, W_out] or nullptr
//   tile_mask[N, tilesH, tilesW] float 0/1
//   output   [N, C_out, H_out, W_out]  (the persistent cache)
// dtype selects float or __half for input/weight/bias/residual/output (accumulation is fp32).
cudaError_t sparseConv2d(const SparseConvParams& p, DataType dtype, const void* input, const void* weight,
                         const void* bias, const void* residual, const float* tile_mask, void* output,
                         cudaStream_t stream);
void sparseConv2dCpu(const SparseConvParams& p, const float* input, const float* weight, const float* bias,
                     const float* residual, const float* tile_mask, float* output);

}  // namespace passrt
