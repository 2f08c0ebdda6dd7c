// The TensorRT plugin's weights in the NHWC tile kernels' layout, laid out once into device memory the
// plugin owns. TensorRT-free (CUDA runtime and passrt's kernels only), so the GPU check tests it on a
// GPU without TensorRT (plugins/tensorrt/tests/laidWeightsTest.cu).
#pragma once

#include "passrt_tiles.h"

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

namespace passrt::trt {

// The channel-last path's weight and bias in the kernels' layout (kernelLayoutCuda), in device memory the
// plugin object owns: laid out from the ONNX weight input at the first enqueue and reused by every later
// frame, instead of one layout launch per layer and frame. Laid out again only if the weight's address or
// type changes (TensorRT times fp32 and fp16 on one object at build time). The memory is allocated outside
// enqueue where TensorRT allows (configurePlugin / onShapeChange: reserve()), else at the first enqueue that
// is not being captured into a CUDA graph (cudaMalloc may not run during a capture); until then, and if
// cudaMalloc fails, enqueue lays out into the workspace as before. A layout recorded into a CUDA graph does
// not count as done (the graph replays it; an eager enqueue lays out again). Nothing here is serialized: a
// deserialized or cloned plugin starts empty (the copy constructor copies nothing), and the memory is
// freed by release() (TensorRT 8's terminate()) or the destructor.
class LaidWeights {
 public:
  LaidWeights() noexcept = default;
  LaidWeights(LaidWeights const&) noexcept {}
  LaidWeights& operator=(LaidWeights const&) = delete;
  ~LaidWeights() { release(); }

  // Device memory for a weight of weightBytes and a float bias of biasBytes (grows, never shrinks).
  // false if cudaMalloc failed (enqueue then uses the workspace).
  bool reserve(size_t weightBytes, size_t biasBytes) noexcept;
  void release() noexcept;

  // The weight and bias for this enqueue: the owned copy (laid out now if it is not yet, or is stale), or,
  // without one, laid out into the workspace's weight/bias. kernelLayoutCuda's status.
  cudaError_t prepare(SparseConvParams const& p, passrt::DataType dtype, size_t weightBytes, size_t biasBytes,
                      void const* weight, void const* bias, void* workspaceWeight, float* workspaceBias,
                      cudaStream_t stream, void const*& laidWeight, float const*& laidBias) noexcept;

  // How many layouts prepare() launched into the owned memory (tests; the device check).
  int32_t layouts() const noexcept { return mLayouts; }

 private:
  char* mMemory{nullptr};
  size_t mWeightBytes{0}, mBiasBytes{0};
  void const* mFromWeight{nullptr};  // what the owned copy was laid out from; null: not laid out
  void const* mFromBias{nullptr};
  passrt::DataType mDtype{passrt::DataType::kFloat32};
  int32_t mLayouts{0};
};

}  // namespace passrt::trt
