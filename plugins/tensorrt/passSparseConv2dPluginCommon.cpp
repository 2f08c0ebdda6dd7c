// PassSparseConv2d plugin: what both plugin generations share (passSparseConv2dPluginCommon.h).
//
// How the node works (the ONNX contract, README.md):
//   inputs  0 x [N, C_in, H, W], 1 tile_mask [N, 1, tilesH, tilesW] (fp32 0/1),
//           2 cache_in [N, C_out, H_out, W_out], 3 weight, 4 bias, 5 optional residual;
//   output  0 cache_out = cache_in with the active tiles recomputed.
// enqueue() copies cache_in to cache_out and lets passrt::sparseConv2d rewrite the active tiles. The
// state is explicit: the caller feeds cache_out back as the next frame's cache_in. A cache kept inside
// the plugin instead would be hidden per-context state that TensorRT knows nothing about: engines
// could not be shared between contexts or streams, a CUDA graph would bake in one buffer, and
// TensorRT 8 and 10 manage per-context plugin resources differently. Explicit I/O costs one device
// copy per layer and frame, and behaves the same everywhere.
//
// Every TensorRT entry point is noexcept: errors are returned as status codes and described through
// reportError() (the error recorder, else TensorRT's logger); no exception leaves the plugin.
#include "passSparseConv2dPluginCommon.h"

#include "passSparseConv2dPlugin.h"
#include "pluginInfo.h"

#include <cuda_runtime_api.h>

#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>

namespace passrt::trt {
namespace {

using nvinfer1::ErrorCode;
using nvinfer1::ILogger;

void formatMessage(char (&text)[kMaxMessage], char const* format, va_list args) noexcept {
  int32_t const prefix = std::snprintf(text, kMaxMessage, "%s::%s: ", kPluginNamespace, kPluginName);
  if (prefix >= 0 && static_cast<size_t>(prefix) < kMaxMessage) {
    std::vsnprintf(text + prefix, kMaxMessage - static_cast<size_t>(prefix), format, args);
  }
}

void logMessage(ILogger::Severity severity, char const* text) noexcept {
  // TensorRT's global logger: the application's logger when it has created a builder or runtime.
  ILogger* logger = getLogger();
  if (logger != nullptr) {
    logger->log(severity, text);
  } else {
    std::fprintf(stderr, "%s\n", text);
  }
}

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
void logWarning(char const* format, ...) noexcept {
  char text[kMaxMessage];
  va_list args;
  va_start(args, format);
  formatMessage(text, format, args);
  va_end(args);
  logMessage(ILogger::Severity::kWARNING, text);
}

bool fitsInt32(int64_t value) { return value >= 0 && value <= INT32_MAX; }

// Copies the dimensions out of TensorRT's descriptors; false if nbInputs is not 5 or 6.
template <typename Desc, typename GetDims>
bool collectDims(Desc const* desc, int32_t nbInputs, GetDims getDims, InputDims& dims) noexcept {
  if (desc == nullptr || nbInputs < kNbInputsPlain || nbInputs > kNbInputsWithResidual) {
    return false;
  }
  for (int32_t i = 0; i < nbInputs; ++i) {
    nvinfer1::Dims const d = getDims(desc[i]);
    dims.nbDims[i] = static_cast<int32_t>(d.nbDims);
    for (int32_t j = 0; j < kRank && j < d.nbDims; ++j) {
      dims.d[i][j] = d.d[j];
    }
  }
  return true;
}

template <typename Desc, typename GetDims>
bool checkCollected(SparseConvAttributes const& a, Desc const* desc, int32_t nbInputs, GetDims getDims, InputDims& dims,
                    nvinfer1::IErrorRecorder* recorder) noexcept {
  Message error;
  if (!collectDims(desc, nbInputs, getDims, dims)) {
    return false;
  }
  if (!checkShapes(a, dims, nbInputs, error)) {
    reportError(recorder, ErrorCode::kINVALID_ARGUMENT, "%s", error.text);
    return false;
  }
  return true;
}

}  // namespace

void reportError(nvinfer1::IErrorRecorder* recorder, ErrorCode code, char const* format, ...) noexcept {
  char text[kMaxMessage];
  va_list args;
  va_start(args, format);
  formatMessage(text, format, args);
  va_end(args);

  if (recorder == nullptr) {
    nvinfer1::IPluginRegistry* registry = getPluginRegistry();
    recorder = registry != nullptr ? registry->getErrorRecorder() : nullptr;
  }
  if (recorder != nullptr) {
    recorder->reportError(code, text);
  } else {
    logMessage(ILogger::Severity::kERROR, text);
  }
}

void reportException(std::exception const& e) noexcept {
  reportError(nullptr, ErrorCode::kINTERNAL_ERROR, "%s", e.what());
}

nvinfer1::PluginFieldType pluginFieldType(FieldType type) noexcept {
  return type == FieldType::kFloat32 ? nvinfer1::PluginFieldType::kFLOAT32 : nvinfer1::PluginFieldType::kINT32;
}

bool parseFields(nvinfer1::PluginFieldCollection const* fc, SparseConvAttributes& attributes,
                 int32_t& nbInputs) noexcept {
  if (fc == nullptr || fc->nbFields < 0 || (fc->nbFields > 0 && fc->fields == nullptr)) {
    reportError(nullptr, ErrorCode::kINVALID_ARGUMENT, "invalid PluginFieldCollection");
    return false;
  }
  bool seen[kNbAttributes]{};
  Message error;
  for (int32_t i = 0; i < fc->nbFields; ++i) {
    nvinfer1::PluginField const& field = fc->fields[i];
    // A TensorRT type this plugin never uses maps to an impossible FieldType, so it fails the type check.
    bool const known =
        field.type == nvinfer1::PluginFieldType::kINT32 || field.type == nvinfer1::PluginFieldType::kFLOAT32;
    FieldView const view{field.name, field.data,
                         field.type == nvinfer1::PluginFieldType::kFLOAT32 ? FieldType::kFloat32 : FieldType::kInt32,
                         known ? field.length : -1};
    switch (parseField(view, attributes, nbInputs, seen, error)) {
      case FieldStatus::kOk:
        break;
      case FieldStatus::kUnknown:
        // Not fatal: an application may pass extra fields, and this plugin version ignores them.
        logWarning("ignoring unknown attribute '%s'", field.name);
        break;
      case FieldStatus::kError:
        reportError(nullptr, ErrorCode::kINVALID_ARGUMENT, "%s", error.text);
        return false;
    }
  }
  if (!finishParsing(attributes, seen, error)) {
    reportError(nullptr, ErrorCode::kINVALID_ARGUMENT, "%s", error.text);
    return false;
  }
  return true;
}

AdvertisedFields::AdvertisedFields() {
  mFields.reserve(kNbAttributes);
  for (AttributeSpec const& spec : kAttributes) {
    mFields.emplace_back(spec.name, nullptr, pluginFieldType(spec.type), spec.length);
  }
  mCollection.nbFields = static_cast<int32_t>(mFields.size());
  mCollection.fields = mFields.data();
}

bool checkIoCount(int32_t nbInputs, int32_t nbOutputs, nvinfer1::IErrorRecorder* recorder) noexcept {
  if (!isValidIoCount(nbInputs, nbOutputs)) {
    reportError(recorder, ErrorCode::kINVALID_ARGUMENT,
                "expects 5 inputs (x, tile_mask, cache_in, weight, bias) or 6 (+ residual) and 1 output, got %d and %d",
                nbInputs, nbOutputs);
    return false;
  }
  return true;
}

bool supportsIo(int32_t pos, nvinfer1::DataType type, nvinfer1::TensorFormat format, nvinfer1::DataType xType,
                int32_t nbInputs, int32_t nbOutputs) noexcept {
  if (!isValidIoCount(nbInputs, nbOutputs) || pos < 0 || pos >= nbInputs + nbOutputs) {
    return false;
  }
  if (format != nvinfer1::TensorFormat::kLINEAR) {
    return false;
  }
  if (pos == kInMask) {
    return type == nvinfer1::DataType::kFLOAT;
  }
  if (pos == kInX) {
    return type == nvinfer1::DataType::kFLOAT || type == nvinfer1::DataType::kHALF;
  }
  return type == xType;
}

bool checkDescs(SparseConvAttributes const& a, nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                int32_t nbOutputs, nvinfer1::IErrorRecorder* recorder) noexcept {
  InputDims dims;
  auto getDims = [](nvinfer1::DynamicPluginTensorDesc const& d) { return d.desc.dims; };
  return checkIoCount(nbInputs, nbOutputs, recorder) && checkCollected(a, in, nbInputs, getDims, dims, recorder);
}

bool checkRuntimeDescs(SparseConvAttributes const& a, nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
                       nvinfer1::IErrorRecorder* recorder) noexcept {
  InputDims dims;
  auto getDims = [](nvinfer1::PluginTensorDesc const& d) { return d.dims; };
  return checkCollected(a, in, nbInputs, getDims, dims, recorder);
}

// Called once per frame and layer, so it stays cheap: a few integer checks, one copy, one launch;
// no allocation and no synchronisation (the memcpy is asynchronous and device to device), which
// also keeps it capturable into a CUDA graph.
int32_t launch(SparseConvAttributes const& a, int32_t nbInputs, nvinfer1::PluginTensorDesc const* inputDesc,
               nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs, void* const* outputs,
               cudaStream_t stream, nvinfer1::IErrorRecorder* recorder) noexcept {
  if (!isValidIoCount(nbInputs, kNbOutputs)) {
    reportError(recorder, ErrorCode::kINVALID_STATE,
                "enqueue before the input count was known (%d); was the plugin configured?", nbInputs);
    return kFailure;
  }
  if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr) {
    reportError(recorder, ErrorCode::kINVALID_ARGUMENT, "enqueue got null descriptors or buffers");
    return kFailure;
  }
  InputDims dims;
  auto getDims = [](nvinfer1::PluginTensorDesc const& d) { return d.dims; };
  if (!checkCollected(a, inputDesc, nbInputs, getDims, dims, recorder)) {
    return kFailure;
  }
  Extent const* x = dims.d[kInX];
  Extent const* cache = dims.d[kInCache];
  for (int32_t i = 0; i < kRank; ++i) {
    if (!fitsInt32(x[i]) || !fitsInt32(cache[i]) || outputDesc[0].dims.d[i] != cache[i]) {
      reportError(recorder, ErrorCode::kINVALID_ARGUMENT, "bad runtime shapes (dimension %d)", i);
      return kFailure;
    }
  }

  passrt::DataType dtype{};
  size_t elementSize{0};
  switch (inputDesc[kInX].type) {
    case nvinfer1::DataType::kFLOAT:
      dtype = passrt::DataType::kFloat32;
      elementSize = sizeof(float);
      break;
    case nvinfer1::DataType::kHALF:
      dtype = passrt::DataType::kFloat16;
      elementSize = sizeof(uint16_t);
      break;
    default:
      reportError(recorder, ErrorCode::kUNSUPPORTED_STATE, "x must be fp32 or fp16, got DataType %d",
                  static_cast<int32_t>(inputDesc[kInX].type));
      return kFailure;
  }

  SparseConvParams const p = toParams(a, x, cache);
  // The kernel header's check, the same the PyTorch op runs: what the shape checks above cannot see.
  if (char const* problem = checkSparseConv2d(p)) {
    reportError(recorder, ErrorCode::kINVALID_ARGUMENT, "%s", problem);
    return kFailure;
  }
  size_t const cacheBytes = static_cast<size_t>(cache[0]) * static_cast<size_t>(cache[1]) *
                            static_cast<size_t>(cache[2]) * static_cast<size_t>(cache[3]) * elementSize;
  if (cacheBytes == 0) {
    return kSuccess;
  }
  void* const output = outputs[0];
  // TensorRT may hand the plugin the same buffer for cache_in and cache_out; then there is nothing to copy.
  if (output != inputs[kInCache]) {
    cudaError_t const status = cudaMemcpyAsync(output, inputs[kInCache], cacheBytes, cudaMemcpyDeviceToDevice, stream);
    if (status != cudaSuccess) {
      reportError(recorder, ErrorCode::kFAILED_EXECUTION, "copying cache_in to cache_out failed: %s",
                  cudaGetErrorString(status));
      return kFailure;
    }
  }
  void const* const residual = nbInputs == kNbInputsWithResidual ? inputs[kInResidual] : nullptr;
  cudaError_t const status = sparseConv2d(p, dtype, inputs[kInX], inputs[kInWeight], inputs[kInBias], residual,
                                          static_cast<float const*>(inputs[kInMask]), output, stream);
  if (status != cudaSuccess) {
    reportError(recorder, ErrorCode::kFAILED_EXECUTION, "passrt::sparseConv2d failed: %s", cudaGetErrorString(status));
    return kFailure;
  }
  return kSuccess;
}

namespace {

// Registers the creator when the library is loaded (trtexec --plugins / --staticPlugins, ctypes.CDLL,
// dlopen), which is what REGISTER_TENSORRT_PLUGIN does, with one difference: the macro registers under
// the empty namespace, while the ONNX parser looks the creator up under the node's plugin_namespace
// ("passrt"). Passing kPluginNamespace here, as well as returning it from getPluginNamespace(),
// keeps registry entry, ONNX node and serialized engines in agreement.
class CreatorRegistrar {
 public:
  CreatorRegistrar() noexcept {
    nvinfer1::IPluginRegistry* registry = getPluginRegistry();
    if (registry == nullptr || !registry->registerCreator(mCreator, kPluginNamespace)) {
      // Also the outcome of loading the library twice: the first registration stays in effect.
      logWarning(
          "could not register the plugin creator in namespace '%s' (no plugin registry, or "
          "already registered)",
          kPluginNamespace);
    }
  }

 private:
  PassSparseConv2dPluginCreator mCreator;
};

CreatorRegistrar sCreatorRegistrar;

}  // namespace

}  // namespace passrt::trt
