// What the TensorRT 10 (V3) and TensorRT 8 (V2) plugin classes share and that needs TensorRT's
// types: error reporting, the field collections, formats, the shape checks on TensorRT's
// descriptors and the launch. The TensorRT-free logic underneath is sparseConvAttributes.h.
#pragma once

#include "laidWeights.h"
#include "sparseConvAttributes.h"

#include "NvInferRuntime.h"

#include <exception>
#include <vector>

namespace passrt::trt {

// The TensorRT names both plugin generations' classes use (scoped to passrt::trt).
using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::ErrorCode;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using nvinfer1::PluginTensorDesc;

// enqueue() and the other status-returning methods.
constexpr int32_t kSuccess{0};
constexpr int32_t kFailure{-1};

// Reports an error to `recorder` (the execution context's, TensorRT 10 only), else to the plugin
// registry's recorder if the application installed one, else to TensorRT's logger.
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void reportError(nvinfer1::IErrorRecorder* recorder, nvinfer1::ErrorCode code, char const* format, ...) noexcept;

// For the catch blocks around code that may allocate.
void reportException(std::exception const& e) noexcept;

// Fills `attributes` (and `nbInputs`, when the collection carries the runtime-only field) from a
// field collection: the ONNX parser's, an application's, or TensorRT 10's deserialized one.
bool parseFields(nvinfer1::PluginFieldCollection const* fc, SparseConvAttributes& attributes,
                 int32_t& nbInputs) noexcept;

// The creators' list of attributes (names, types and lengths, no data) and the collection over it,
// which both creator generations return from getFieldNames().
class AdvertisedFields {
 public:
  AdvertisedFields();
  AdvertisedFields(AdvertisedFields const&) = delete;
  AdvertisedFields& operator=(AdvertisedFields const&) = delete;

  nvinfer1::PluginFieldCollection const* collection() const noexcept { return &mCollection; }

 private:
  std::vector<nvinfer1::PluginField> mFields;
  nvinfer1::PluginFieldCollection mCollection{};
};

// TensorRT's type of an attribute.
nvinfer1::PluginFieldType pluginFieldType(FieldType type) noexcept;

bool checkIoCount(int32_t nbInputs, int32_t nbOutputs, nvinfer1::IErrorRecorder* recorder) noexcept;

// x in fp32 or fp16 and every other tensor in x's type, except the tile mask, which is always fp32
// (the kernels read it as float). The tile mask, weight and bias are linear; x, cache_in, residual and
// cache_out share one format: linear (NCHW kernels), or channel-last for the convs the NHWC tile
// kernels compute (nhwcCapable): kHWC with fp32, kHWC8 with fp16 (rows of C rounded up to 8, which the
// kernels read through their row strides; `channels`, this tensor's C, must be known).
// `xType`/`xFormat` are only read for pos > 0, where TensorRT has already fixed position 0.
bool supportsIo(int32_t pos, nvinfer1::DataType type, nvinfer1::TensorFormat format, nvinfer1::DataType xType,
                nvinfer1::TensorFormat xFormat, int64_t channels, bool nhwcCapable, int32_t nbInputs,
                int32_t nbOutputs) noexcept;

// supportsIo() on one generation's descriptors (PluginTensorDesc for TensorRT 8, the .desc of
// DynamicPluginTensorDesc for 10): the channel counts come from the descriptors' dimensions.
bool supportsDesc(SparseConvAttributes const& attributes, int32_t pos, nvinfer1::PluginTensorDesc const* inOut,
                  int32_t nbInputs, int32_t nbOutputs) noexcept;

// The channel-last path's workspace (nhwcWorkspace) for these descriptors, for every conv that path can
// run (whichever format TensorRT ends up choosing); 0 for the others.
size_t workspaceBytes(SparseConvAttributes const& attributes, nvinfer1::PluginTensorDesc const* inputs,
                      int32_t nbInputs) noexcept;

// checkShapes() on configurePlugin()'s descriptors.
bool checkDescs(SparseConvAttributes const& attributes, nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                int32_t nbOutputs, nvinfer1::IErrorRecorder* recorder) noexcept;

// checkShapes() on runtime descriptors (onShapeChange(), enqueue()).
bool checkRuntimeDescs(SparseConvAttributes const& attributes, nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                       nvinfer1::IErrorRecorder* recorder) noexcept;

// Reserves `laid` for these (configured or runtime) descriptors when the channel-last path can run them
// and every extent is known; a failure is not an error (enqueue falls back to the workspace).
void reserveLaidWeights(SparseConvAttributes const& attributes, nvinfer1::PluginTensorDesc const* inputs,
                        int32_t nbInputs, LaidWeights& laid) noexcept;

// Checks the real shapes, copies cache_in to cache_out unless TensorRT aliased them, and launches on
// `stream`: the NCHW kernel for linear formats, the NHWC tile kernels for channel-last ones (their
// scratch in `workspace`, workspaceBytes() long; the weight from `laid`).
int32_t launch(SparseConvAttributes const& attributes, int32_t nbInputs, nvinfer1::PluginTensorDesc const* inputDesc,
               nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs, void* const* outputs,
               void* workspace, LaidWeights& laid, cudaStream_t stream, nvinfer1::IErrorRecorder* recorder) noexcept;

}  // namespace passrt::trt
