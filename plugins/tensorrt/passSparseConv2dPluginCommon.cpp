// PassSparseConv2d plugin: what both plugin generations share (passSparseConv2dPluginCommon.h).
//
// How the node works (the ONNX contract, README.md):
//   inputs  0 x [N, C_in, H, W], 1 tile_mask [N, 1, tilesH, tilesW] (fp32 0/1),
//           2 cache_in [N, C_out, H_out, W_out], 3 weight, 4 bias, 5 optional residual;
//   output  0 cache_out = cache_in with the active tiles recomputed.
// Two kernel families, chosen by the format TensorRT picked (supportsIo offers both, TensorRT times them):
// linear NCHW -> passrt::sparseConv2d (sparse_conv2d.cu, any groups); channel-last (fp32 kHWC, fp16
// kHWC8, whose rows of C rounded up to 8 the kernels read through their row strides) -> the NHWC tile
// kernels (tiles_nhwc.cu: device cell list, persistent grids, fp16 on tensor cores), for every conv
// (groups 1, depthwise, grouped), so a layer between TensorRT's own HWC8 convs needs no reformat, a
// 12-channel fp16 head included. The weight is laid out for those kernels once, into memory the plugin
// owns (LaidWeights). enqueue() copies cache_in to cache_out (unless TensorRT >= 10.3 aliased them) and
// the kernel rewrites the active tiles. The
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
#include "passrt_tiles.h"
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

bool channelLast(nvinfer1::TensorFormat format) noexcept { return format != nvinfer1::TensorFormat::kLINEAR; }

// Elements between consecutive cells' rows of a channel-last tensor of `channels` channels: kHWC8 pads
// C to a multiple of 8 (what TensorRT stores), kHWC does not.
int64_t rowStride(nvinfer1::TensorFormat format, int64_t channels) noexcept {
  return format == nvinfer1::TensorFormat::kHWC8 ? (channels + 7) / 8 * 8 : channels;
}

// The channel-last path (supportsIo: x, caches and residual in kHWC / kHWC8, i.e. [N][H][W][row stride]):
// the weight in the kernels' layout (laid out once, LaidWeights), then per image the active cells listed
// on the device from the tile mask (activeCellsCuda) and one launch over them of the GEMM (any groups) or
// depthwise tile kernel, writing cache_out in place. No host sync; no allocation after the first frame.
int32_t launchNhwc(SparseConvParams const& p, passrt::DataType dtype, size_t elementSize, void const* const* inputs,
                   void const* residual, void* output, void* workspace, LaidWeights& laid, cudaStream_t stream,
                   nvinfer1::IErrorRecorder* recorder) noexcept {
  NhwcWorkspace const ws = nhwcWorkspace(p, elementSize);
  if (workspace == nullptr || ws.capacity == 0) {
    reportError(recorder, ErrorCode::kINVALID_STATE, "the channel-last path needs a %zu-byte workspace, got none",
                ws.bytes);
    return kFailure;
  }
  auto* const base = static_cast<char*>(workspace);
  auto* const cells = reinterpret_cast<int32_t*>(base + ws.cells);
  auto* const count = reinterpret_cast<int32_t*>(base + ws.count);
  void const* weight = nullptr;
  float const* bias = nullptr;
  cudaError_t status = laid.prepare(p, dtype, ws.bias - ws.weight, ws.bytes - ws.bias, inputs[kInWeight],
                                    inputs[kInBias], base + ws.weight, reinterpret_cast<float*>(base + ws.bias),
                                    stream, weight, bias);
  SparseConvParams one = p;  // the tile kernels take one image; the batch runs image after image
  one.batch = 1;
  size_t const inImage = static_cast<size_t>(p.in_h) * p.in_w * p.inStride() * elementSize;
  size_t const outImage = static_cast<size_t>(p.out_h) * p.out_w * p.outStride() * elementSize;
  int64_t const tiles = static_cast<int64_t>(p.tilesH()) * p.tilesW();
  for (int32_t n = 0; n < p.batch && status == cudaSuccess; ++n) {
    float const* mask = static_cast<float const*>(inputs[kInMask]) + n * tiles;
    status = activeCellsCuda(p.out_h, p.out_w, p.tile, mask, cells, count, stream);
    if (status != cudaSuccess) {
      break;
    }
    CellRange const range{cells, count, ws.capacity};
    void const* const in = static_cast<char const*>(inputs[kInX]) + n * inImage;
    void const* const res = residual != nullptr ? static_cast<char const*>(residual) + n * outImage : nullptr;
    void* const out = static_cast<char*>(output) + n * outImage;
    bool const depthwise = p.groups > 1 && p.groups == p.in_channels && p.in_channels == p.out_channels;
    status = depthwise ? depthwiseCellsNhwcCuda(one, dtype, in, weight, bias, res, range, out, false, stream)
                       : convCellsNhwcCuda(one, dtype, in, false, weight, bias, res, range, out, false, stream);
  }
  if (status != cudaSuccess) {
    reportError(recorder, ErrorCode::kFAILED_EXECUTION, "the NHWC tile kernels failed: %s", cudaGetErrorString(status));
    return kFailure;
  }
  return kSuccess;
}

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
                nvinfer1::TensorFormat xFormat, int64_t channels, bool nhwcCapable, int32_t nbInputs,
                int32_t nbOutputs) noexcept {
  using nvinfer1::DataType;
  using nvinfer1::TensorFormat;
  if (!isValidIoCount(nbInputs, nbOutputs) || pos < 0 || pos >= nbInputs + nbOutputs) {
    return false;
  }
  if (pos == kInMask) {
    return type == DataType::kFLOAT && format == TensorFormat::kLINEAR;
  }
  if (pos == kInWeight || pos == kInBias) {  // constants: the NHWC path lays the weight out itself (kernelLayoutCuda)
    return type == xType && format == TensorFormat::kLINEAR;
  }
  // The data tensors: x, cache_in, residual, cache_out.
  if (pos == kInX ? type != DataType::kFLOAT && type != DataType::kHALF : type != xType) {
    return false;
  }
  if (pos != kInX && format != xFormat) {
    return false;
  }
  if (format == TensorFormat::kLINEAR) {
    return true;
  }
  if (!nhwcCapable) {
    return false;
  }
  if (format == TensorFormat::kHWC) {
    return type == DataType::kFLOAT;
  }
  return format == TensorFormat::kHWC8 && type == DataType::kHALF && channels > 0;
}

bool supportsDesc(SparseConvAttributes const& a, int32_t pos, nvinfer1::PluginTensorDesc const* inOut, int32_t nbInputs,
                  int32_t nbOutputs) noexcept {
  if (inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs || !isValidIoCount(nbInputs, nbOutputs)) {
    return false;
  }
  auto const channels = [&](int32_t i) -> int64_t { return inOut[i].dims.nbDims > 1 ? inOut[i].dims.d[1] : -1; };
  bool const capable = nhwcCapable(a, channels(kInX), channels(kInCache));
  return supportsIo(pos, inOut[pos].type, inOut[pos].format, inOut[kInX].type, inOut[kInX].format, channels(pos),
                    capable, nbInputs, nbOutputs);
}

size_t workspaceBytes(SparseConvAttributes const& a, nvinfer1::PluginTensorDesc const* inputs,
                      int32_t nbInputs) noexcept {
  InputDims dims;
  auto getDims = [](nvinfer1::PluginTensorDesc const& d) { return d.dims; };
  // Asked for every conv the channel-last path can run, whatever format the descriptors show: TensorRT
  // may ask before its final format choice, and a missing workspace would stop enqueue().
  if (inputs == nullptr || !collectDims(inputs, nbInputs, getDims, dims) ||
      !nhwcCapable(a, dims.d[kInX][1], dims.d[kInCache][1])) {
    return 0;
  }
  for (int32_t i = 0; i < kRank; ++i) {
    if (!fitsInt32(dims.d[kInX][i]) || !fitsInt32(dims.d[kInCache][i])) {
      return 0;  // unknown extents: enqueue() refuses to run without a workspace, with a message
    }
  }
  size_t const element = inputs[kInX].type == nvinfer1::DataType::kHALF ? sizeof(uint16_t) : sizeof(float);
  return nhwcWorkspace(toParams(a, dims.d[kInX], dims.d[kInCache]), element).bytes;
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

// Called once per frame and layer, so it stays cheap: a few integer checks, one copy, a launch or two;
// no synchronisation (the memcpy is asynchronous and device to device) and no allocation, except a
// cudaMalloc for the laid-out weight at the first enqueue when configurePlugin/onShapeChange could not
// make it, and never during a CUDA graph capture (LaidWeights), so it stays capturable.
int32_t launch(SparseConvAttributes const& a, int32_t nbInputs, nvinfer1::PluginTensorDesc const* inputDesc,
               nvinfer1::PluginTensorDesc const* outputDesc, void const* const* inputs, void* const* outputs,
               void* workspace, LaidWeights& laid, cudaStream_t stream, nvinfer1::IErrorRecorder* recorder) noexcept {
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

  SparseConvParams p = toParams(a, x, cache);
  bool const nhwc = channelLast(inputDesc[kInX].format);
  if (nhwc) {  // rows as TensorRT stores them: kHWC8 pads C to a multiple of 8
    p.in_stride = static_cast<int32_t>(rowStride(inputDesc[kInX].format, x[1]));
    p.out_stride = static_cast<int32_t>(rowStride(outputDesc[0].format, cache[1]));
  }
  // The kernel header's check, the same the PyTorch op runs: what the shape checks above cannot see.
  if (char const* problem = checkSparseConv2d(p)) {
    reportError(recorder, ErrorCode::kINVALID_ARGUMENT, "%s", problem);
    return kFailure;
  }
  size_t const cacheBytes = static_cast<size_t>(cache[0]) * static_cast<size_t>(nhwc ? p.outStride() : cache[1]) *
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
  if (nhwc) {
    return launchNhwc(p, dtype, elementSize, inputs, residual, output, workspace, laid, stream, recorder);
  }
  cudaError_t const status = sparseConv2d(p, dtype, inputs[kInX], inputs[kInWeight], inputs[kInBias], residual,
                                          static_cast<float const*>(inputs[kInMask]), output, stream);
  if (status != cudaSuccess) {
    reportError(recorder, ErrorCode::kFAILED_EXECUTION, "passrt::sparseConv2d failed: %s", cudaGetErrorString(status));
    return kFailure;
  }
  return kSuccess;
}

void reserveLaidWeights(SparseConvAttributes const& a, nvinfer1::PluginTensorDesc const* inputs, int32_t nbInputs,
                        LaidWeights& laid) noexcept {
  InputDims dims;
  auto getDims = [](nvinfer1::PluginTensorDesc const& d) { return d.dims; };
  if (inputs == nullptr || !channelLast(inputs[kInX].format) || !collectDims(inputs, nbInputs, getDims, dims) ||
      !nhwcCapable(a, dims.d[kInX][1], dims.d[kInCache][1])) {
    return;
  }
  for (int32_t i = 0; i < kRank; ++i) {
    if (!fitsInt32(dims.d[kInX][i]) || !fitsInt32(dims.d[kInCache][i]) || dims.d[kInX][i] == 0) {
      return;  // unknown extents (build time): enqueue reserves with the real ones
    }
  }
  size_t const element = inputs[kInX].type == nvinfer1::DataType::kHALF ? sizeof(uint16_t) : sizeof(float);
  NhwcWorkspace const ws = nhwcWorkspace(toParams(a, dims.d[kInX], dims.d[kInCache]), element);
  laid.reserve(ws.bias - ws.weight, ws.bytes - ws.bias);
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
