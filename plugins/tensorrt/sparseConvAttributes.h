// The TensorRT-free half of the PassSparseConv2d plugin: the ONNX node's attributes, their parsing,
// validation and serialization, the shape checks and the kernel parameters.
//
// Nothing here includes a TensorRT header, so CI compiles and tests it with a plain C++ compiler
// (plugins/tensorrt/tests/attributesTest.cpp): a mistake in this logic fails the suite on any
// machine, not only where TensorRT's headers are installed. The TensorRT classes
// (passSparseConv2dPluginV3/V2) only translate TensorRT's types to and from these functions.
#pragma once

#include "passrt_kernels.h"

#include <cstddef>
#include <cstdint>

namespace passrt::trt {

// The ONNX node's attributes, with ONNX Conv's defaults where the contract has one. Plain data:
// kAttributes addresses the members by offset to parse, serialize and advertise them from one list.
struct SparseConvAttributes {
  int32_t kernelShape[2]{0, 0};  // kh, kw; required (and checked against the weight's shape).
  int32_t strides[2]{1, 1};
  int32_t dilations[2]{1, 1};
  int32_t pads[4]{0, 0, 0, 0};  // top, left, bottom, right (ONNX order).
  int32_t group{1};
  int32_t tile{0};               // Output cells per tile side; required.
  int32_t activation{0};         // passrt::Activation, before the residual add.
  float activationAlpha{0.01F};  // LeakyReLU slope.
  int32_t postActivation{0};     // passrt::Activation, after the residual add.
};

// An attribute's value type: TensorRT's PluginFieldType::kINT32 / kFLOAT32, without TensorRT.
enum class FieldType : int32_t {
  kInt32,
  kFloat32,
};

// One ONNX attribute: its name, type and number of values, and where it lives in SparseConvAttributes.
struct AttributeSpec {
  char const* name;
  FieldType type;
  int32_t length;
  size_t offset;
};

// clang-format off
// The node's attributes, one row each. The only list of them in C++: the creators advertise it
// (the ONNX parser passes exactly these attributes), createPlugin() parses against it, and both
// serializations walk it. tests/plugins/test_tensorrt_plugin.py checks it against the contract.
constexpr AttributeSpec kAttributes[] = {
    {"kernel_shape",     FieldType::kInt32,   2, offsetof(SparseConvAttributes, kernelShape)},
    {"strides",          FieldType::kInt32,   2, offsetof(SparseConvAttributes, strides)},
    {"dilations",        FieldType::kInt32,   2, offsetof(SparseConvAttributes, dilations)},
    {"pads",             FieldType::kInt32,   4, offsetof(SparseConvAttributes, pads)},
    {"group",            FieldType::kInt32,   1, offsetof(SparseConvAttributes, group)},
    {"tile",             FieldType::kInt32,   1, offsetof(SparseConvAttributes, tile)},
    {"activation",       FieldType::kInt32,   1, offsetof(SparseConvAttributes, activation)},
    {"activation_alpha", FieldType::kFloat32, 1, offsetof(SparseConvAttributes, activationAlpha)},
    {"post_activation",  FieldType::kInt32,   1, offsetof(SparseConvAttributes, postActivation)},
};
// clang-format on
constexpr int32_t kNbAttributes{static_cast<int32_t>(sizeof(kAttributes) / sizeof(kAttributes[0]))};

// Runtime-only field of TensorRT 10's serialized plugin (not an ONNX attribute, so the creator does
// not advertise it): the input count, see PassSparseConv2dPlugin::mNbInputs.
constexpr char const* kNbInputsField{"num_inputs"};

// Input positions of the ONNX node.
constexpr int32_t kInX{0};
constexpr int32_t kInMask{1};
constexpr int32_t kInCache{2};
constexpr int32_t kInWeight{3};
constexpr int32_t kInBias{4};
constexpr int32_t kInResidual{5};
constexpr int32_t kNbInputsPlain{5};
constexpr int32_t kNbInputsWithResidual{6};
constexpr int32_t kNbOutputs{1};
constexpr int32_t kRank{4};  // Every tensor is NCHW, except the bias.

// Extents as long long: TensorRT 8's int32 and TensorRT 10's int64 dimensions alike, printable with %lld.
using Extent = long long;

// The inputs' dimensions (rank, extents; -1 = unknown at build time), copied out of TensorRT's Dims.
struct InputDims {
  int32_t nbDims[kNbInputsWithResidual]{};
  Extent d[kNbInputsWithResidual][kRank]{};
};

// An error's text. A fixed buffer, so that reporting can neither allocate nor throw (it also runs on
// enqueue()'s error path).
constexpr size_t kMaxMessage{512};
struct Message {
  char text[kMaxMessage]{};
};

// One field as TensorRT hands it over (PluginField), in TensorRT-free terms.
struct FieldView {
  char const* name;
  void const* data;
  FieldType type;
  int32_t length;
};

// Outcome of parseField(): unknown names are not fatal (an application may pass extra fields).
enum class FieldStatus : int32_t {
  kOk,
  kUnknown,
  kError,
};

// Index of `name` in kAttributes, or -1.
int32_t findAttribute(char const* name) noexcept;

// Where an attribute's values live in `attributes` (length 4-byte words).
void* attributeStorage(SparseConvAttributes& attributes, AttributeSpec const& spec) noexcept;
void const* attributeStorage(SparseConvAttributes const& attributes, AttributeSpec const& spec) noexcept;

// Stores one field into `attributes` (or `nbInputs` for kNbInputsField) and marks it in `seen`
// (kNbAttributes flags); on kERROR, `error` says why.
FieldStatus parseField(FieldView const& field, SparseConvAttributes& attributes, int32_t& nbInputs, bool* seen,
                       Message& error) noexcept;

// After the last field: the required attributes were all seen and every value is valid.
bool finishParsing(SparseConvAttributes const& attributes, bool const* seen, Message& error) noexcept;

// Attribute values the kernels and the ONNX node accept: the kernel header's check
// (checkSparseConv2dAttributes) plus the bottom/right pads, which the kernels never see.
bool validateAttributes(SparseConvAttributes const& attributes, Message& error) noexcept;

// The kernel parameters for input x [N, C_in, H, W] and cache [N, C_out, H_out, W_out].
SparseConvParams toParams(SparseConvAttributes const& attributes, Extent const* x, Extent const* cache) noexcept;

// ---- Channel-last formats: the NHWC tile kernels (passrt_tiles.h, tiles_nhwc.cu) ----------------
// x, cache_in, residual and cache_out may be channel-last: TensorRT's kHWC for fp32 ([N][H][W][C]) and
// kHWC8 for fp16 ([N][H][W][C rounded up to 8]: the kernels read rows that far apart and never touch the
// padding), for every conv the tile kernels compute: groups 1, depthwise, and grouped convs (one GEMM per
// group over its slice of the rows). Linear NCHW stays available for every conv (the NCHW kernels,
// sparse_conv2d.cu), and TensorRT picks by measuring both. False only for channel counts groups does not
// divide (which checkShapes refuses anyway).
bool nhwcCapable(SparseConvAttributes const& attributes, Extent inChannels, Extent outChannels) noexcept;

// enqueue()'s scratch for the channel-last path, one frame, carved from TensorRT's workspace: the cell
// list (capacity = tilesH * tilesW * tile * tile) and its device-side count, then room for the weight in
// the kernels' layout (x's element size) and the bias in float32, used only when the plugin's own copy
// (LaidWeights, laid out once) could not be made. Offsets are 256-byte aligned.
struct NhwcWorkspace {
  size_t cells, count, weight, bias, bytes;  // byte offsets of each part, and the total
  int32_t capacity;
};
NhwcWorkspace nhwcWorkspace(SparseConvParams const& p, size_t elementSize) noexcept;

// True for 5 inputs (no residual) or 6, and 1 output.
bool isValidIoCount(int32_t nbInputs, int32_t nbOutputs) noexcept;

// Checks the inputs' dimensions against one another and the attributes. Dimensions that are still
// unknown (-1, at build time) match anything, so this runs at build time and again with the real
// shapes before every launch.
bool checkShapes(SparseConvAttributes const& attributes, InputDims const& in, int32_t nbInputs,
                 Message& error) noexcept;

// TensorRT 8's serialized plugin: a magic word, every attribute's values in kAttributes order, the input count.
size_t serialSize() noexcept;
void serialize(SparseConvAttributes const& attributes, int32_t nbInputs, void* buffer) noexcept;
bool deserialize(void const* data, size_t length, SparseConvAttributes& attributes, int32_t& nbInputs,
                 Message& error) noexcept;

}  // namespace passrt::trt
