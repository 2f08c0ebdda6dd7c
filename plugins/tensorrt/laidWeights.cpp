// LaidWeights (laidWeights.h): the plugin's weights laid out once.
#include "laidWeights.h"

namespace passrt::trt {

bool LaidWeights::reserve(size_t weightBytes, size_t biasBytes) noexcept {
  size_t const aligned = (weightBytes + 255) / 256 * 256;
  if (mMemory != nullptr && mWeightBytes >= aligned && mBiasBytes >= biasBytes) {
    return true;
  }
  release();
  void* memory = nullptr;
  if (cudaMalloc(&memory, aligned + biasBytes) != cudaSuccess) {
    return false;
  }
  mMemory = static_cast<char*>(memory);
  mWeightBytes = aligned;
  mBiasBytes = biasBytes;
  return true;
}

void LaidWeights::release() noexcept {
  if (mMemory != nullptr) {
    cudaFree(mMemory);
  }
  mMemory = nullptr;
  mWeightBytes = mBiasBytes = 0;
  mFromWeight = mFromBias = nullptr;
}

cudaError_t LaidWeights::prepare(SparseConvParams const& p, passrt::DataType dtype, size_t weightBytes,
                                 size_t biasBytes, void const* weight, void const* bias, void* workspaceWeight,
                                 float* workspaceBias, cudaStream_t stream, void const*& laidWeight,
                                 float const*& laidBias) noexcept {
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  bool const capturing =
      cudaStreamIsCapturing(stream, &capture) != cudaSuccess || capture != cudaStreamCaptureStatusNone;
  if (!capturing) {
    reserve(weightBytes, biasBytes);  // a no-op once reserved; on failure the workspace serves
  }
  if (mMemory == nullptr || mWeightBytes < weightBytes || mBiasBytes < biasBytes) {
    laidWeight = workspaceWeight;
    laidBias = workspaceBias;
    return kernelLayoutCuda(p, dtype, weight, bias, workspaceWeight, workspaceBias, stream);
  }
  laidWeight = mMemory;
  laidBias = reinterpret_cast<float*>(mMemory + mWeightBytes);
  if (mFromWeight == weight && mFromBias == bias && mDtype == dtype && weight != nullptr) {
    return cudaSuccess;  // laid out by an earlier frame
  }
  cudaError_t const status =
      kernelLayoutCuda(p, dtype, weight, bias, mMemory, reinterpret_cast<float*>(mMemory + mWeightBytes), stream);
  ++mLayouts;
  bool const done = status == cudaSuccess && !capturing;  // a captured layout runs when the graph does
  mFromWeight = done ? weight : nullptr;
  mFromBias = done ? bias : nullptr;
  mDtype = dtype;
  return status;
}

}  // namespace passrt::trt
