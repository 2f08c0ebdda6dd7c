// PassSparseConv2d plugin: TensorRT 10 (IPluginV3) and TensorRT 8 (IPluginV2DynamicExt) from one source.
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
// reportError() (the error recorder, else TensorRT's logger); no exception leaves this file.
#include "passSparseConv2dPlugin.h"

#include "passrt_kernels.h"
#include "pluginInfo.h"

#include <cuda_runtime_api.h>

#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <exception>

namespace passrt
{
namespace trt
{
namespace
{

using nvinfer1::Dims;
using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::ErrorCode;
using nvinfer1::IErrorRecorder;
using nvinfer1::ILogger;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using nvinfer1::PluginTensorDesc;
using nvinfer1::TensorFormat;

// Input positions of the ONNX node.
constexpr int32_t kIN_X{0};
constexpr int32_t kIN_MASK{1};
constexpr int32_t kIN_CACHE{2};
constexpr int32_t kIN_WEIGHT{3};
constexpr int32_t kIN_BIAS{4};
constexpr int32_t kIN_RESIDUAL{5};
constexpr int32_t kNB_INPUTS_PLAIN{5};
constexpr int32_t kNB_INPUTS_WITH_RESIDUAL{6};
constexpr int32_t kNB_OUTPUTS{1};
constexpr int32_t kRANK{4}; // Every tensor is NCHW, except the bias.

// enqueue() and the other status-returning methods.
constexpr int32_t kSUCCESS{0};
constexpr int32_t kFAILURE{-1};

//! Largest activation code the kernels know. Update with passrt::Activation.
constexpr int32_t kMAX_ACTIVATION{static_cast<int32_t>(Activation::kLeakyRelu)};

//! Runtime-only field of TensorRT 10's serialized plugin (not an ONNX attribute, so the creator does
//! not advertise it): the input count, see PassSparseConv2dPlugin::mNbInputs.
constexpr char const* kNB_INPUTS_FIELD{"num_inputs"};

//! One ONNX attribute: its name, PluginField type and number of values, and where it lives in
//! SparseConvAttributes.
struct AttributeSpec
{
    char const* name;
    PluginFieldType type;
    int32_t length;
    size_t offset;
};

// clang-format off
//! The node's attributes, one row each. The only list of them in C++: the creators advertise it
//! (the ONNX parser passes exactly these attributes), createPlugin() parses against it, and both
//! serializations walk it. tests/plugins/test_tensorrt_plugin.py checks it against the contract.
constexpr AttributeSpec kATTRIBUTES[] = {
    {"kernel_shape",     PluginFieldType::kINT32,   2, offsetof(SparseConvAttributes, kernelShape)},
    {"strides",          PluginFieldType::kINT32,   2, offsetof(SparseConvAttributes, strides)},
    {"dilations",        PluginFieldType::kINT32,   2, offsetof(SparseConvAttributes, dilations)},
    {"pads",             PluginFieldType::kINT32,   4, offsetof(SparseConvAttributes, pads)},
    {"group",            PluginFieldType::kINT32,   1, offsetof(SparseConvAttributes, group)},
    {"tile",             PluginFieldType::kINT32,   1, offsetof(SparseConvAttributes, tile)},
    {"activation",       PluginFieldType::kINT32,   1, offsetof(SparseConvAttributes, activation)},
    {"activation_alpha", PluginFieldType::kFLOAT32, 1, offsetof(SparseConvAttributes, activationAlpha)},
    {"post_activation",  PluginFieldType::kINT32,   1, offsetof(SparseConvAttributes, postActivation)},
};
// clang-format on
constexpr int32_t kNB_ATTRIBUTES{static_cast<int32_t>(sizeof(kATTRIBUTES) / sizeof(kATTRIBUTES[0]))};

// Every attribute value is a 4-byte word (int32 or float32), which the byte copies below rely on.
static_assert(sizeof(int32_t) == sizeof(float), "attribute values are 4-byte words");
constexpr size_t kVALUE_SIZE{sizeof(int32_t)};

constexpr size_t tableWords()
{
    size_t words = 0;
    for (AttributeSpec const& spec : kATTRIBUTES)
    {
        words += static_cast<size_t>(spec.length);
    }
    return words;
}
// A member added to SparseConvAttributes without a row here would be silently neither parsed nor serialized.
static_assert(
    sizeof(SparseConvAttributes) == tableWords() * kVALUE_SIZE, "kATTRIBUTES must cover SparseConvAttributes");

// Attributes without an ONNX default: the exporter always writes them.
constexpr char const* kREQUIRED_ATTRIBUTES[] = {"kernel_shape", "tile"};

void* attributeStorage(SparseConvAttributes& attributes, AttributeSpec const& spec) noexcept
{
    return static_cast<char*>(static_cast<void*>(&attributes)) + spec.offset;
}

void const* attributeStorage(SparseConvAttributes const& attributes, AttributeSpec const& spec) noexcept
{
    return static_cast<char const*>(static_cast<void const*>(&attributes)) + spec.offset;
}

int32_t findAttribute(char const* name) noexcept
{
    for (int32_t i = 0; i < kNB_ATTRIBUTES; ++i)
    {
        if (std::strcmp(kATTRIBUTES[i].name, name) == 0)
        {
            return i;
        }
    }
    return -1;
}

// ---------------------------------------------------------------------------------------------------
// Error reporting. Messages go into a fixed buffer so that reporting itself can neither allocate nor
// throw (it also runs on enqueue()'s error path).

constexpr size_t kMAX_MESSAGE{512};

void formatMessage(char (&text)[kMAX_MESSAGE], char const* format, va_list args) noexcept
{
    int32_t const prefix = std::snprintf(text, kMAX_MESSAGE, "%s::%s: ", kPLUGIN_NAMESPACE, kPLUGIN_NAME);
    if (prefix >= 0 && static_cast<size_t>(prefix) < kMAX_MESSAGE)
    {
        std::vsnprintf(text + prefix, kMAX_MESSAGE - static_cast<size_t>(prefix), format, args);
    }
}

void logMessage(ILogger::Severity severity, char const* text) noexcept
{
    // TensorRT's global logger: the application's logger when it has created a builder or runtime.
    ILogger* logger = getLogger();
    if (logger != nullptr)
    {
        logger->log(severity, text);
    }
    else
    {
        std::fprintf(stderr, "%s\n", text);
    }
}

//! Reports an error to `recorder` (the execution context's, TensorRT 10 only), else to the plugin
//! registry's recorder if the application installed one, else to TensorRT's logger.
#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
void reportError(IErrorRecorder* recorder, ErrorCode code, char const* format, ...) noexcept
{
    char text[kMAX_MESSAGE];
    va_list args;
    va_start(args, format);
    formatMessage(text, format, args);
    va_end(args);

    if (recorder == nullptr)
    {
        nvinfer1::IPluginRegistry* registry = getPluginRegistry();
        recorder = registry != nullptr ? registry->getErrorRecorder() : nullptr;
    }
    if (recorder != nullptr)
    {
        recorder->reportError(code, text);
    }
    else
    {
        logMessage(ILogger::Severity::kERROR, text);
    }
}

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
void logWarning(char const* format, ...) noexcept
{
    char text[kMAX_MESSAGE];
    va_list args;
    va_start(args, format);
    formatMessage(text, format, args);
    va_end(args);
    logMessage(ILogger::Severity::kWARNING, text);
}

//! For the catch blocks around code that may allocate.
void reportException(std::exception const& e) noexcept
{
    reportError(nullptr, ErrorCode::kINTERNAL_ERROR, "%s", e.what());
}

// ---------------------------------------------------------------------------------------------------
// Attributes.

bool isActivation(int32_t value) noexcept
{
    return value >= 0 && value <= kMAX_ACTIVATION;
}

bool validateAttributes(SparseConvAttributes const& a) noexcept
{
    bool ok = true;
    for (int32_t i = 0; i < 2; ++i)
    {
        if (a.kernelShape[i] <= 0 || a.strides[i] <= 0 || a.dilations[i] <= 0)
        {
            ok = false;
        }
    }
    for (int32_t const pad : a.pads)
    {
        if (pad < 0)
        {
            ok = false;
        }
    }
    if (!ok)
    {
        reportError(nullptr, ErrorCode::kINVALID_ARGUMENT,
            "kernel_shape, strides and dilations must be positive and pads non-negative "
            "(kernel_shape %d,%d strides %d,%d dilations %d,%d pads %d,%d,%d,%d)",
            a.kernelShape[0], a.kernelShape[1], a.strides[0], a.strides[1], a.dilations[0], a.dilations[1], a.pads[0],
            a.pads[1], a.pads[2], a.pads[3]);
        return false;
    }
    if (a.group <= 0 || a.tile <= 0)
    {
        reportError(
            nullptr, ErrorCode::kINVALID_ARGUMENT, "group (%d) and tile (%d) must be positive", a.group, a.tile);
        return false;
    }
    if (!isActivation(a.activation) || !isActivation(a.postActivation))
    {
        reportError(nullptr, ErrorCode::kINVALID_ARGUMENT,
            "activation (%d) and post_activation (%d) must be passrt::Activation values 0..%d", a.activation,
            a.postActivation, kMAX_ACTIVATION);
        return false;
    }
    return true;
}

//! Fills `attributes` (and `nbInputs`, when the collection carries the runtime-only field) from a
//! field collection: the ONNX parser's, an application's, or TensorRT 10's deserialized one.
bool parseFields(PluginFieldCollection const* fc, SparseConvAttributes& attributes, int32_t& nbInputs) noexcept
{
    if (fc == nullptr || fc->nbFields < 0 || (fc->nbFields > 0 && fc->fields == nullptr))
    {
        reportError(nullptr, ErrorCode::kINVALID_ARGUMENT, "invalid PluginFieldCollection");
        return false;
    }
    bool seen[kNB_ATTRIBUTES]{};
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& field = fc->fields[i];
        if (field.name == nullptr)
        {
            reportError(nullptr, ErrorCode::kINVALID_ARGUMENT, "plugin field %d has no name", i);
            return false;
        }
        if (std::strcmp(field.name, kNB_INPUTS_FIELD) == 0)
        {
            if (field.type != PluginFieldType::kINT32 || field.length != 1 || field.data == nullptr)
            {
                reportError(nullptr, ErrorCode::kINVALID_ARGUMENT, "field %s must be one int32", kNB_INPUTS_FIELD);
                return false;
            }
            std::memcpy(&nbInputs, field.data, kVALUE_SIZE);
            continue;
        }
        int32_t const index = findAttribute(field.name);
        if (index < 0)
        {
            // Not fatal: an application may pass extra fields, and this plugin version ignores them.
            logWarning("ignoring unknown attribute '%s'", field.name);
            continue;
        }
        AttributeSpec const& spec = kATTRIBUTES[index];
        if (field.type != spec.type || field.length != spec.length || field.data == nullptr)
        {
            reportError(nullptr, ErrorCode::kINVALID_ARGUMENT,
                "attribute %s must be %d %s value(s), got %d of PluginFieldType %d", spec.name, spec.length,
                spec.type == PluginFieldType::kFLOAT32 ? "float32" : "int32", field.length,
                static_cast<int32_t>(field.type));
            return false;
        }
        std::memcpy(attributeStorage(attributes, spec), field.data, kVALUE_SIZE * static_cast<size_t>(spec.length));
        seen[index] = true;
    }
    for (char const* required : kREQUIRED_ATTRIBUTES)
    {
        if (!seen[findAttribute(required)])
        {
            reportError(nullptr, ErrorCode::kINVALID_ARGUMENT, "attribute %s is required", required);
            return false;
        }
    }
    return validateAttributes(attributes);
}

//! The creators' list: names, types and lengths, no data.
std::vector<PluginField> advertisedFields()
{
    std::vector<PluginField> fields;
    fields.reserve(kNB_ATTRIBUTES);
    for (AttributeSpec const& spec : kATTRIBUTES)
    {
        fields.emplace_back(spec.name, nullptr, spec.type, spec.length);
    }
    return fields;
}

// ---------------------------------------------------------------------------------------------------
// Formats and shapes, shared by both plugin generations.

bool isValidIoCount(int32_t nbInputs, int32_t nbOutputs) noexcept
{
    return (nbInputs == kNB_INPUTS_PLAIN || nbInputs == kNB_INPUTS_WITH_RESIDUAL) && nbOutputs == kNB_OUTPUTS;
}

bool checkIoCount(int32_t nbInputs, int32_t nbOutputs, IErrorRecorder* recorder) noexcept
{
    if (!isValidIoCount(nbInputs, nbOutputs))
    {
        reportError(recorder, ErrorCode::kINVALID_ARGUMENT,
            "expects 5 inputs (x, tile_mask, cache_in, weight, bias) or 6 (+ residual) and 1 output, got %d and %d",
            nbInputs, nbOutputs);
        return false;
    }
    return true;
}

//! Linear (NCHW) everywhere; x in fp32 or fp16 and every other tensor in x's type, except the tile
//! mask, which is always fp32 (the kernels read it as float). `xType` is only read for pos > 0, where
//! TensorRT has already fixed position 0.
bool supportsIo(int32_t pos, nvinfer1::DataType type, TensorFormat format, nvinfer1::DataType xType, int32_t nbInputs,
    int32_t nbOutputs) noexcept
{
    if (!isValidIoCount(nbInputs, nbOutputs) || pos < 0 || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    if (format != TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == kIN_MASK)
    {
        return type == nvinfer1::DataType::kFLOAT;
    }
    if (pos == kIN_X)
    {
        return type == nvinfer1::DataType::kFLOAT || type == nvinfer1::DataType::kHALF;
    }
    return type == xType;
}

//! Extents as long long: TensorRT 8's int32 and TensorRT 10's int64 dimensions alike, and printable with %lld.
using Extent = long long;

//! Output size of the convolution along one axis (ONNX Conv, explicit pads).
Extent convOutputSize(Extent in, int32_t kernel, int32_t stride, int32_t dilation, int32_t padBegin, int32_t padEnd)
{
    Extent const span = static_cast<Extent>(dilation) * (kernel - 1) + 1;
    return (in + padBegin + padEnd - span) / stride + 1;
}

Extent ceilDiv(Extent a, Extent b)
{
    return (a + b - 1) / b;
}

//! True if both extents are known (build-time dimensions may be -1) and differ.
bool differ(Extent a, Extent b)
{
    return a >= 0 && b >= 0 && a != b;
}

//! Checks the inputs' dimensions against one another and the attributes. Dimensions that are still
//! unknown (-1, at build time) match anything, so this runs at build time and again with the real
//! shapes before every launch.
bool checkShapes(SparseConvAttributes const& a, Dims const* in, int32_t nbInputs, IErrorRecorder* recorder) noexcept
{
    Extent dims[kNB_INPUTS_WITH_RESIDUAL][kRANK]{};
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        int32_t const rank = i == kIN_BIAS ? 1 : kRANK;
        if (in[i].nbDims != rank)
        {
            reportError(recorder, ErrorCode::kINVALID_ARGUMENT, "input %d must have rank %d, got %d", i, rank,
                static_cast<int32_t>(in[i].nbDims));
            return false;
        }
        for (int32_t j = 0; j < rank; ++j)
        {
            dims[i][j] = in[i].d[j];
        }
    }
    Extent const* x = dims[kIN_X];
    Extent const* mask = dims[kIN_MASK];
    Extent const* cache = dims[kIN_CACHE];
    Extent const* weight = dims[kIN_WEIGHT];
    Extent const* bias = dims[kIN_BIAS];
    Extent const* residual = dims[kIN_RESIDUAL];
    bool const hasResidual = nbInputs == kNB_INPUTS_WITH_RESIDUAL;

    bool const batchOk
        = !differ(x[0], mask[0]) && !differ(x[0], cache[0]) && !(hasResidual && differ(x[0], residual[0]));
    bool const outChannelsOk
        = !differ(cache[1], weight[0]) && !differ(cache[1], bias[0]) && (weight[0] < 0 || weight[0] % a.group == 0);
    bool const inChannelsOk = weight[1] < 0 || !differ(x[1], weight[1] * a.group);
    if (!batchOk || !outChannelsOk || !inChannelsOk)
    {
        reportError(recorder, ErrorCode::kINVALID_ARGUMENT,
            "inconsistent inputs: x [%lld,%lld,..], tile_mask [%lld,..], cache_in [%lld,%lld,..], "
            "weight [%lld,%lld,..], bias [%lld], group %d",
            x[0], x[1], mask[0], cache[0], cache[1], weight[0], weight[1], bias[0], a.group);
        return false;
    }
    if (differ(weight[2], a.kernelShape[0]) || differ(weight[3], a.kernelShape[1]))
    {
        reportError(recorder, ErrorCode::kINVALID_ARGUMENT, "weight is %lldx%lld but kernel_shape is %dx%d", weight[2],
            weight[3], a.kernelShape[0], a.kernelShape[1]);
        return false;
    }
    // The kernels take only the top/left pads: the bottom/right ones are implied by cache_in's size,
    // which must therefore be exactly the convolution's output size.
    Extent const expectH
        = x[2] < 0 ? -1 : convOutputSize(x[2], a.kernelShape[0], a.strides[0], a.dilations[0], a.pads[0], a.pads[2]);
    Extent const expectW
        = x[3] < 0 ? -1 : convOutputSize(x[3], a.kernelShape[1], a.strides[1], a.dilations[1], a.pads[1], a.pads[3]);
    if ((x[2] >= 0 && expectH < 1) || (x[3] >= 0 && expectW < 1) || differ(cache[2], expectH)
        || differ(cache[3], expectW))
    {
        reportError(recorder, ErrorCode::kINVALID_ARGUMENT,
            "cache_in is %lldx%lld but the convolution of a %lldx%lld input gives %lldx%lld", cache[2], cache[3], x[2],
            x[3], expectH, expectW);
        return false;
    }
    Extent const tilesH = cache[2] < 0 ? -1 : ceilDiv(cache[2], a.tile);
    Extent const tilesW = cache[3] < 0 ? -1 : ceilDiv(cache[3], a.tile);
    if (differ(mask[1], 1) || differ(mask[2], tilesH) || differ(mask[3], tilesW))
    {
        reportError(recorder, ErrorCode::kINVALID_ARGUMENT,
            "tile_mask is [%lld,%lld,%lld] but tile %d over a %lldx%lld output needs [1,%lld,%lld]", mask[1], mask[2],
            mask[3], a.tile, cache[2], cache[3], tilesH, tilesW);
        return false;
    }
    for (int32_t i = 1; hasResidual && i < kRANK; ++i)
    {
        if (differ(residual[i], cache[i]))
        {
            reportError(recorder, ErrorCode::kINVALID_ARGUMENT, "residual must have cache_in's shape");
            return false;
        }
    }
    return true;
}

//! Copies the dimensions out of TensorRT's descriptors for checkShapes(); false if nbInputs is not 5 or 6.
template <typename Desc, typename GetDims>
bool collectDims(Desc const* desc, int32_t nbInputs, GetDims getDims, Dims (&dims)[kNB_INPUTS_WITH_RESIDUAL]) noexcept
{
    if (desc == nullptr || nbInputs < kNB_INPUTS_PLAIN || nbInputs > kNB_INPUTS_WITH_RESIDUAL)
    {
        return false;
    }
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        dims[i] = getDims(desc[i]);
    }
    return true;
}

bool checkDescs(SparseConvAttributes const& a, DynamicPluginTensorDesc const* in, int32_t nbInputs, int32_t nbOutputs,
    IErrorRecorder* recorder) noexcept
{
    Dims dims[kNB_INPUTS_WITH_RESIDUAL];
    auto getDims = [](DynamicPluginTensorDesc const& d) { return d.desc.dims; };
    return checkIoCount(nbInputs, nbOutputs, recorder) && collectDims(in, nbInputs, getDims, dims)
        && checkShapes(a, dims, nbInputs, recorder);
}

bool fitsInt32(int64_t value)
{
    return value >= 0 && value <= INT32_MAX;
}

//! Checks the real shapes, copies cache_in to cache_out and launches the kernel on `stream`.
//! Called once per frame and layer, so it stays cheap: a few integer checks, one copy, one launch;
//! no allocation and no synchronisation (the memcpy is asynchronous and device to device), which
//! also keeps it capturable into a CUDA graph.
int32_t launch(SparseConvAttributes const& a, int32_t nbInputs, PluginTensorDesc const* inputDesc,
    PluginTensorDesc const* outputDesc, void const* const* inputs, void* const* outputs, cudaStream_t stream,
    IErrorRecorder* recorder) noexcept
{
    if (!isValidIoCount(nbInputs, kNB_OUTPUTS))
    {
        reportError(recorder, ErrorCode::kINVALID_STATE,
            "enqueue before the input count was known (%d); was the plugin configured?", nbInputs);
        return kFAILURE;
    }
    if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr)
    {
        reportError(recorder, ErrorCode::kINVALID_ARGUMENT, "enqueue got null descriptors or buffers");
        return kFAILURE;
    }
    Dims dims[kNB_INPUTS_WITH_RESIDUAL];
    auto getDims = [](PluginTensorDesc const& d) { return d.dims; };
    if (!collectDims(inputDesc, nbInputs, getDims, dims) || !checkShapes(a, dims, nbInputs, recorder))
    {
        return kFAILURE;
    }
    Dims const& x = dims[kIN_X];
    Dims const& cache = dims[kIN_CACHE];
    for (int32_t i = 0; i < kRANK; ++i)
    {
        if (!fitsInt32(x.d[i]) || !fitsInt32(cache.d[i]) || outputDesc[0].dims.d[i] != cache.d[i])
        {
            reportError(recorder, ErrorCode::kINVALID_ARGUMENT, "bad runtime shapes (dimension %d)", i);
            return kFAILURE;
        }
    }

    passrt::DataType dtype{};
    size_t elementSize{0};
    switch (inputDesc[kIN_X].type)
    {
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
            static_cast<int32_t>(inputDesc[kIN_X].type));
        return kFAILURE;
    }

    SparseConvParams p{};
    p.batch = static_cast<int32_t>(x.d[0]);
    p.in_channels = static_cast<int32_t>(x.d[1]);
    p.in_h = static_cast<int32_t>(x.d[2]);
    p.in_w = static_cast<int32_t>(x.d[3]);
    p.out_channels = static_cast<int32_t>(cache.d[1]);
    p.out_h = static_cast<int32_t>(cache.d[2]);
    p.out_w = static_cast<int32_t>(cache.d[3]);
    p.kernel_h = a.kernelShape[0];
    p.kernel_w = a.kernelShape[1];
    p.stride_h = a.strides[0];
    p.stride_w = a.strides[1];
    p.dilation_h = a.dilations[0];
    p.dilation_w = a.dilations[1];
    p.pad_top = a.pads[0];
    p.pad_left = a.pads[1];
    p.groups = a.group;
    p.tile = a.tile;
    p.act = static_cast<Activation>(a.activation);
    p.act_alpha = a.activationAlpha;
    p.post_act = static_cast<Activation>(a.postActivation);

    size_t const cacheBytes = static_cast<size_t>(cache.d[0]) * static_cast<size_t>(cache.d[1])
        * static_cast<size_t>(cache.d[2]) * static_cast<size_t>(cache.d[3]) * elementSize;
    if (cacheBytes == 0)
    {
        return kSUCCESS;
    }
    void* const output = outputs[0];
    // TensorRT may hand the plugin the same buffer for cache_in and cache_out; then there is nothing to copy.
    if (output != inputs[kIN_CACHE])
    {
        cudaError_t const status
            = cudaMemcpyAsync(output, inputs[kIN_CACHE], cacheBytes, cudaMemcpyDeviceToDevice, stream);
        if (status != cudaSuccess)
        {
            reportError(recorder, ErrorCode::kFAILED_EXECUTION, "copying cache_in to cache_out failed: %s",
                cudaGetErrorString(status));
            return kFAILURE;
        }
    }
    void const* const residual = nbInputs == kNB_INPUTS_WITH_RESIDUAL ? inputs[kIN_RESIDUAL] : nullptr;
    cudaError_t const status = sparseConv2d(p, dtype, inputs[kIN_X], inputs[kIN_WEIGHT], inputs[kIN_BIAS], residual,
        static_cast<float const*>(inputs[kIN_MASK]), output, stream);
    if (status != cudaSuccess)
    {
        reportError(
            recorder, ErrorCode::kFAILED_EXECUTION, "passrt::sparseConv2d failed: %s", cudaGetErrorString(status));
        return kFAILURE;
    }
    return kSUCCESS;
}

} // namespace

#if NV_TENSORRT_MAJOR >= 10

// ===================================================================================================
// TensorRT 10: IPluginV3.

PassSparseConv2dPlugin::PassSparseConv2dPlugin(SparseConvAttributes const& attributes, int32_t nbInputs) noexcept
    : mAttributes(attributes)
    , mNbInputs(nbInputs)
{
}

nvinfer1::IPluginCapability* PassSparseConv2dPlugin::getCapabilityInterface(
    nvinfer1::PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

nvinfer1::IPluginV3* PassSparseConv2dPlugin::clone() noexcept
{
    try
    {
        return new PassSparseConv2dPlugin(*this);
    }
    catch (std::exception const& e)
    {
        reportException(e);
    }
    return nullptr;
}

char const* PassSparseConv2dPlugin::getPluginName() const noexcept
{
    return kPLUGIN_NAME;
}

char const* PassSparseConv2dPlugin::getPluginVersion() const noexcept
{
    return kPLUGIN_VERSION;
}

char const* PassSparseConv2dPlugin::getPluginNamespace() const noexcept
{
    return kPLUGIN_NAMESPACE;
}

int32_t PassSparseConv2dPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    if (!checkDescs(mAttributes, in, nbInputs, nbOutputs, mErrorRecorder) || out == nullptr)
    {
        return kFAILURE;
    }
    mNbInputs = nbInputs;
    return kSUCCESS;
}

int32_t PassSparseConv2dPlugin::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
    nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (!checkIoCount(nbInputs, nbOutputs, mErrorRecorder) || outputTypes == nullptr || inputTypes == nullptr)
    {
        return kFAILURE;
    }
    outputTypes[0] = inputTypes[kIN_X];
    return kSUCCESS;
}

int32_t PassSparseConv2dPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* /* shapeInputs */, int32_t /* nbShapeInputs */, DimsExprs* outputs, int32_t nbOutputs,
    nvinfer1::IExprBuilder& /* exprBuilder */) noexcept
{
    if (!checkIoCount(nbInputs, nbOutputs, mErrorRecorder) || inputs == nullptr || outputs == nullptr)
    {
        return kFAILURE;
    }
    if (inputs[kIN_CACHE].nbDims != kRANK)
    {
        reportError(mErrorRecorder, ErrorCode::kINVALID_ARGUMENT, "cache_in must have rank 4");
        return kFAILURE;
    }
    // Also recorded here, not only in configurePlugin(): this runs on the network's own plugin object,
    // from which every later clone (and the serialized plugin) descends.
    mNbInputs = nbInputs;
    outputs[0] = inputs[kIN_CACHE];
    return kSUCCESS;
}

bool PassSparseConv2dPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || pos < 0)
    {
        return false;
    }
    nvinfer1::PluginTensorDesc const& desc = inOut[pos].desc;
    return supportsIo(pos, desc.type, desc.format, inOut[kIN_X].desc.type, nbInputs, nbOutputs);
}

int32_t PassSparseConv2dPlugin::getNbOutputs() const noexcept
{
    return kNB_OUTPUTS;
}

int32_t PassSparseConv2dPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    Dims dims[kNB_INPUTS_WITH_RESIDUAL];
    auto getDims = [](PluginTensorDesc const& d) { return d.dims; };
    if (!checkIoCount(nbInputs, nbOutputs, mErrorRecorder) || out == nullptr
        || !collectDims(in, nbInputs, getDims, dims) || !checkShapes(mAttributes, dims, nbInputs, mErrorRecorder))
    {
        return kFAILURE;
    }
    mNbInputs = nbInputs;
    return kSUCCESS;
}

int32_t PassSparseConv2dPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* /* workspace */, cudaStream_t stream) noexcept
{
    return launch(mAttributes, mNbInputs, inputDesc, outputDesc, inputs, outputs, stream, mErrorRecorder);
}

nvinfer1::IPluginV3* PassSparseConv2dPlugin::attachToContext(nvinfer1::IPluginResourceContext* context) noexcept
{
    try
    {
        auto* plugin = new PassSparseConv2dPlugin(*this);
        plugin->mErrorRecorder = context != nullptr ? context->getErrorRecorder() : nullptr;
        return plugin;
    }
    catch (std::exception const& e)
    {
        reportException(e);
    }
    return nullptr;
}

nvinfer1::PluginFieldCollection const* PassSparseConv2dPlugin::getFieldsToSerialize() noexcept
{
    try
    {
        mSerialFields.clear();
        SparseConvAttributes const& attributes = mAttributes;
        for (AttributeSpec const& spec : kATTRIBUTES)
        {
            mSerialFields.emplace_back(spec.name, attributeStorage(attributes, spec), spec.type, spec.length);
        }
        mSerialFields.emplace_back(kNB_INPUTS_FIELD, &mNbInputs, PluginFieldType::kINT32, 1);
        mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
        mSerialCollection.fields = mSerialFields.data();
        return &mSerialCollection;
    }
    catch (std::exception const& e)
    {
        reportException(e);
    }
    return nullptr;
}

PassSparseConv2dPluginCreator::PassSparseConv2dPluginCreator()
    : mFieldNames(advertisedFields())
{
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

char const* PassSparseConv2dPluginCreator::getPluginName() const noexcept
{
    return kPLUGIN_NAME;
}

char const* PassSparseConv2dPluginCreator::getPluginVersion() const noexcept
{
    return kPLUGIN_VERSION;
}

char const* PassSparseConv2dPluginCreator::getPluginNamespace() const noexcept
{
    return kPLUGIN_NAMESPACE;
}

nvinfer1::PluginFieldCollection const* PassSparseConv2dPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

nvinfer1::IPluginV3* PassSparseConv2dPluginCreator::createPlugin(
    char const* /* name */, PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /* phase */) noexcept
{
    // Both phases parse the same way: the build phase gets the ONNX attributes, the runtime phase
    // getFieldsToSerialize()'s fields, which add the input count.
    try
    {
        SparseConvAttributes attributes;
        int32_t nbInputs{0};
        if (!parseFields(fc, attributes, nbInputs))
        {
            return nullptr;
        }
        return new PassSparseConv2dPlugin(attributes, nbInputs);
    }
    catch (std::exception const& e)
    {
        reportException(e);
    }
    return nullptr;
}

#else // TensorRT 8.x

// ===================================================================================================
// TensorRT 8: IPluginV2DynamicExt.

namespace
{

//! First word of the serialized plugin: identifies the layout below, so that bytes from another
//! plugin or an older layout are rejected instead of misread. Change it with the layout.
constexpr uint32_t kSERIAL_MAGIC{0x31435350U}; // "PSC1" in little-endian bytes.

//! Serialized layout: magic, then every attribute's values in kATTRIBUTES order, then the input count.
size_t serialSize() noexcept
{
    size_t size = sizeof(kSERIAL_MAGIC) + sizeof(int32_t);
    for (AttributeSpec const& spec : kATTRIBUTES)
    {
        size += kVALUE_SIZE * static_cast<size_t>(spec.length);
    }
    return size;
}

} // namespace

PassSparseConv2dPlugin::PassSparseConv2dPlugin(
    SparseConvAttributes const& attributes, int32_t nbInputs, char const* pluginNamespace)
    : mAttributes(attributes)
    , mNbInputs(nbInputs)
    , mNamespace(pluginNamespace != nullptr ? pluginNamespace : kPLUGIN_NAMESPACE)
{
}

PassSparseConv2dPlugin* PassSparseConv2dPlugin::deserialize(
    void const* data, size_t length, char const* pluginNamespace)
{
    if (data == nullptr || length != serialSize())
    {
        reportError(nullptr, ErrorCode::kINVALID_ARGUMENT,
            "serialized plugin has %zu bytes, expected %zu: engine built with another plugin version?", length,
            serialSize());
        return nullptr;
    }
    char const* cursor = static_cast<char const*>(data);
    uint32_t magic{0};
    std::memcpy(&magic, cursor, sizeof(magic));
    cursor += sizeof(magic);
    if (magic != kSERIAL_MAGIC)
    {
        reportError(nullptr, ErrorCode::kINVALID_ARGUMENT, "serialized plugin has an unknown layout (0x%08x)", magic);
        return nullptr;
    }
    SparseConvAttributes attributes;
    for (AttributeSpec const& spec : kATTRIBUTES)
    {
        size_t const bytes = kVALUE_SIZE * static_cast<size_t>(spec.length);
        std::memcpy(attributeStorage(attributes, spec), cursor, bytes);
        cursor += bytes;
    }
    int32_t nbInputs{0};
    std::memcpy(&nbInputs, cursor, sizeof(nbInputs));
    if (!validateAttributes(attributes))
    {
        return nullptr;
    }
    return new PassSparseConv2dPlugin(attributes, nbInputs, pluginNamespace);
}

char const* PassSparseConv2dPlugin::getPluginType() const noexcept
{
    return kPLUGIN_NAME;
}

char const* PassSparseConv2dPlugin::getPluginVersion() const noexcept
{
    return kPLUGIN_VERSION;
}

int32_t PassSparseConv2dPlugin::getNbOutputs() const noexcept
{
    return kNB_OUTPUTS;
}

int32_t PassSparseConv2dPlugin::initialize() noexcept
{
    // Nothing to set up: the plugin owns no device memory, handles or streams.
    return kSUCCESS;
}

void PassSparseConv2dPlugin::terminate() noexcept {}

size_t PassSparseConv2dPlugin::getSerializationSize() const noexcept
{
    return serialSize();
}

void PassSparseConv2dPlugin::serialize(void* buffer) const noexcept
{
    if (buffer == nullptr)
    {
        return;
    }
    char* cursor = static_cast<char*>(buffer);
    std::memcpy(cursor, &kSERIAL_MAGIC, sizeof(kSERIAL_MAGIC));
    cursor += sizeof(kSERIAL_MAGIC);
    for (AttributeSpec const& spec : kATTRIBUTES)
    {
        size_t const bytes = kVALUE_SIZE * static_cast<size_t>(spec.length);
        std::memcpy(cursor, attributeStorage(mAttributes, spec), bytes);
        cursor += bytes;
    }
    std::memcpy(cursor, &mNbInputs, sizeof(mNbInputs));
}

void PassSparseConv2dPlugin::destroy() noexcept
{
    delete this;
}

void PassSparseConv2dPlugin::setPluginNamespace(char const* pluginNamespace) noexcept
{
    try
    {
        mNamespace = pluginNamespace != nullptr ? pluginNamespace : "";
    }
    catch (std::exception const& e)
    {
        reportException(e);
    }
}

char const* PassSparseConv2dPlugin::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

nvinfer1::DataType PassSparseConv2dPlugin::getOutputDataType(
    int32_t index, nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (index != 0 || inputTypes == nullptr || !checkIoCount(nbInputs, kNB_OUTPUTS, nullptr))
    {
        return nvinfer1::DataType::kFLOAT;
    }
    return inputTypes[kIN_X];
}

nvinfer1::IPluginV2DynamicExt* PassSparseConv2dPlugin::clone() const noexcept
{
    try
    {
        return new PassSparseConv2dPlugin(*this);
    }
    catch (std::exception const& e)
    {
        reportException(e);
    }
    return nullptr;
}

DimsExprs PassSparseConv2dPlugin::getOutputDimensions(
    int32_t outputIndex, DimsExprs const* inputs, int32_t nbInputs, nvinfer1::IExprBuilder& /* exprBuilder */) noexcept
{
    if (outputIndex != 0 || inputs == nullptr || !checkIoCount(nbInputs, kNB_OUTPUTS, nullptr)
        || inputs[kIN_CACHE].nbDims != kRANK)
    {
        reportError(nullptr, ErrorCode::kINVALID_ARGUMENT, "cannot infer the output shape (output %d, %d inputs)",
            outputIndex, nbInputs);
        return DimsExprs{};
    }
    // Also recorded here, not only in configurePlugin(): this runs on the network's own plugin object,
    // from which every later clone (and the serialized plugin) descends.
    mNbInputs = nbInputs;
    return inputs[kIN_CACHE];
}

bool PassSparseConv2dPlugin::supportsFormatCombination(
    int32_t pos, PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || pos < 0)
    {
        return false;
    }
    return supportsIo(pos, inOut[pos].type, inOut[pos].format, inOut[kIN_X].type, nbInputs, nbOutputs);
}

void PassSparseConv2dPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    // TensorRT 8 gives configurePlugin() no way to fail: problems are reported here, and enqueue()
    // checks the real shapes again and refuses to run.
    if (checkDescs(mAttributes, in, nbInputs, nbOutputs, nullptr) && out != nullptr)
    {
        mNbInputs = nbInputs;
    }
}

size_t PassSparseConv2dPlugin::getWorkspaceSize(PluginTensorDesc const* /* inputs */, int32_t /* nbInputs */,
    PluginTensorDesc const* /* outputs */, int32_t /* nbOutputs */) const noexcept
{
    return 0;
}

int32_t PassSparseConv2dPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* /* workspace */, cudaStream_t stream) noexcept
{
    return launch(mAttributes, mNbInputs, inputDesc, outputDesc, inputs, outputs, stream, nullptr);
}

PassSparseConv2dPluginCreator::PassSparseConv2dPluginCreator()
    : mFieldNames(advertisedFields())
    , mNamespace(kPLUGIN_NAMESPACE)
{
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

char const* PassSparseConv2dPluginCreator::getPluginName() const noexcept
{
    return kPLUGIN_NAME;
}

char const* PassSparseConv2dPluginCreator::getPluginVersion() const noexcept
{
    return kPLUGIN_VERSION;
}

nvinfer1::PluginFieldCollection const* PassSparseConv2dPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

nvinfer1::IPluginV2* PassSparseConv2dPluginCreator::createPlugin(
    char const* /* name */, PluginFieldCollection const* fc) noexcept
{
    try
    {
        SparseConvAttributes attributes;
        int32_t nbInputs{0};
        if (!parseFields(fc, attributes, nbInputs))
        {
            return nullptr;
        }
        return new PassSparseConv2dPlugin(attributes, nbInputs, mNamespace.c_str());
    }
    catch (std::exception const& e)
    {
        reportException(e);
    }
    return nullptr;
}

nvinfer1::IPluginV2* PassSparseConv2dPluginCreator::deserializePlugin(
    char const* /* name */, void const* serialData, size_t serialLength) noexcept
{
    try
    {
        return PassSparseConv2dPlugin::deserialize(serialData, serialLength, mNamespace.c_str());
    }
    catch (std::exception const& e)
    {
        reportException(e);
    }
    return nullptr;
}

void PassSparseConv2dPluginCreator::setPluginNamespace(char const* pluginNamespace) noexcept
{
    try
    {
        mNamespace = pluginNamespace != nullptr ? pluginNamespace : "";
    }
    catch (std::exception const& e)
    {
        reportException(e);
    }
}

char const* PassSparseConv2dPluginCreator::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

#endif // NV_TENSORRT_MAJOR >= 10

namespace
{

//! Registers the creator when the library is loaded (trtexec --plugins / --staticPlugins, ctypes.CDLL,
//! dlopen), which is what REGISTER_TENSORRT_PLUGIN does, with one difference: the macro registers under
//! the empty namespace, while the ONNX parser looks the creator up under the node's plugin_namespace
//! ("passrt"). Passing kPLUGIN_NAMESPACE here, as well as returning it from getPluginNamespace(),
//! keeps registry entry, ONNX node and serialized engines in agreement.
class CreatorRegistrar
{
public:
    CreatorRegistrar() noexcept
    {
        nvinfer1::IPluginRegistry* registry = getPluginRegistry();
        if (registry == nullptr || !registry->registerCreator(mCreator, kPLUGIN_NAMESPACE))
        {
            // Also the outcome of loading the library twice: the first registration stays in effect.
            logWarning("could not register the plugin creator in namespace '%s' (no plugin registry, or "
                       "already registered)",
                kPLUGIN_NAMESPACE);
        }
    }

private:
    PassSparseConv2dPluginCreator mCreator;
};

CreatorRegistrar sCreatorRegistrar;

} // namespace

} // namespace trt
} // namespace passrt
