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
  int32_t batch;         // N
  int32_t in_channels;   // C_in
  int32_t in_h, in_w;    // H, W
  int32_t out_channels;  // C_out
  int32_t out_h, out_w;  // H_out, W_out
  int32_t kernel_h, kernel_w;
  int32_t stride_h, stride_w;
  int32_t dilation_h, dilation_w;
  int32_t pad_top, pad_left;  // bottom/right padding is implied by out_h/out_w (TF 'SAME' is asymmetric)
  int32_t groups;
  int32_t tile;  // output cells per tile side
  Activation act;
  float act_alpha;      // LeakyReLU slope
  Activation post_act;  // applied after the residual add (kNone for MobileNetV2 blocks)
  // Channel-last (NHWC) maps only (passrt_tiles.h): elements from one cell's row to the next in the
  // input map, and in the output and residual maps; 0 = the channel count (rows packed). A larger
  // stride is a padded row (TensorRT's fp16 kHWC8 stores C rounded up to 8) or a slice of a wider
  // row (one group of a grouped conv). The NCHW kernels ignore them.
  int32_t in_stride;
  int32_t out_stride;

  PASSRT_HOST_DEVICE int32_t tilesH() const { return (out_h + tile - 1) / tile; }
  PASSRT_HOST_DEVICE int32_t tilesW() const { return (out_w + tile - 1) / tile; }
  PASSRT_HOST_DEVICE int32_t inStride() const { return in_stride > 0 ? in_stride : in_channels; }
  PASSRT_HOST_DEVICE int32_t outStride() const { return out_stride > 0 ? out_stride : out_channels; }
};

// The checks of a sparse conv's parameters, written once for every consumer: the PyTorch op
// (passrt/csrc/ops.cpp), the TensorRT plugin and the kernels themselves. Each returns nullptr
// when the parameters are valid, else a fixed message naming the problem (no allocation, so
// the plugin can call them from enqueue); callers add the values they were given.

inline bool isActivation(Activation a) {
  return static_cast<int32_t>(a) >= static_cast<int32_t>(Activation::kNone) &&
         static_cast<int32_t>(a) <= static_cast<int32_t>(Activation::kLeakyRelu);
}

// What the layer's attributes alone decide (kernel, stride, dilation, padding, groups, tile,
// activations); the tensor sizes may still be unknown (the plugin checks this when it is created).
inline const char* checkSparseConv2dAttributes(const SparseConvParams& p) {
  if (p.kernel_h < 1 || p.kernel_w < 1) return "kernel size must be >= 1";
  if (p.stride_h < 1 || p.stride_w < 1) return "stride must be >= 1";
  if (p.dilation_h < 1 || p.dilation_w < 1) return "dilation must be >= 1";
  if (p.pad_top < 0 || p.pad_left < 0) return "padding (top, left) must be >= 0";
  if (p.groups < 1) return "groups must be >= 1";
  if (p.tile < 1) return "tile must be >= 1";
  if (!isActivation(p.act) || !isActivation(p.post_act)) {
    return "act/post_act is not an activation code (0 none, 1 relu, 2 relu6, 3 hardswish, 4 silu, 5 sigmoid, "
           "6 leaky_relu)";
  }
  return nullptr;
}

// Every parameter, sizes included. The output size must be one the conv can produce with
// padding pad_top/pad_left and a bottom/right padding of 0 .. window extent - 1 (the kernels
// get no bottom/right padding: it is implied by out_h/out_w, as TF 'SAME' pads asymmetrically).
inline const char* checkSparseConv2d(const SparseConvParams& p) {
  if (const char* error = checkSparseConv2dAttributes(p)) return error;
  if (p.batch < 0 || p.in_channels < 0 || p.out_channels < 0) return "batch and channel counts must be >= 0";
  if (p.in_channels % p.groups != 0 || p.out_channels % p.groups != 0) {
    return "input and output channels must be divisible by groups";
  }
  if (p.in_h < 1 || p.in_w < 1) return "input has no pixels";
  if (p.in_stride < 0 || p.out_stride < 0 || (p.in_stride > 0 && p.in_stride < p.in_channels) ||
      (p.out_stride > 0 && p.out_stride < p.out_channels)) {
    return "row strides (in_stride, out_stride) must be 0 (packed) or >= the channel count";
  }
  const int64_t extentH = (int64_t)p.dilation_h * (p.kernel_h - 1) + 1;
  const int64_t extentW = (int64_t)p.dilation_w * (p.kernel_w - 1) + 1;
  const int64_t inH = (int64_t)p.in_h + p.pad_top, inW = (int64_t)p.in_w + p.pad_left;
  if (p.out_h < (inH >= extentH ? (inH - extentH) / p.stride_h + 1 : 1) || p.out_h > (inH - 1) / p.stride_h + 1) {
    return "output height does not fit input height, kernel, stride, dilation and top padding "
           "(bottom padding would be outside 0 .. window extent - 1)";
  }
  if (p.out_w < (inW >= extentW ? (inW - extentW) / p.stride_w + 1 : 1) || p.out_w > (inW - 1) / p.stride_w + 1) {
    return "output width does not fit input width, kernel, stride, dilation and left padding "
           "(right padding would be outside 0 .. window extent - 1)";
  }
  return nullptr;
}

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
