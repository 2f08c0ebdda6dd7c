// The TensorRT-free half of the PassSparseConv2d plugin (sparseConvAttributes.h).
#include "sparseConvAttributes.h"

#include <cstdarg>
#include <cstdio>
#include <cstring>

namespace passrt::trt {
namespace {

// Every attribute value is a 4-byte word (int32 or float32), which the byte copies below rely on.
static_assert(sizeof(int32_t) == sizeof(float), "attribute values are 4-byte words");
constexpr size_t kValueSize{sizeof(int32_t)};

constexpr size_t tableWords() {
  size_t words = 0;
  for (AttributeSpec const& spec : kAttributes) {
    words += static_cast<size_t>(spec.length);
  }
  return words;
}
// A member added to SparseConvAttributes without a row in kAttributes would be silently neither
// parsed nor serialized.
static_assert(sizeof(SparseConvAttributes) == tableWords() * kValueSize, "kAttributes must cover SparseConvAttributes");

// Attributes without an ONNX default: the exporter always writes them.
constexpr char const* kRequiredAttributes[] = {"kernel_shape", "tile"};

// First word of the serialized plugin: identifies the layout, so that bytes from another plugin or
// an older layout are rejected instead of misread. Change it with the layout.
constexpr uint32_t kSerialMagic{0x31435350U};  // "PSC1" in little-endian bytes.

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void say(Message& error, char const* format, ...) noexcept {
  va_list args;
  va_start(args, format);
  std::vsnprintf(error.text, kMaxMessage, format, args);
  va_end(args);
}

Extent convOutputSize(Extent in, int32_t kernel, int32_t stride, int32_t dilation, int32_t padBegin, int32_t padEnd) {
  Extent const span = static_cast<Extent>(dilation) * (kernel - 1) + 1;
  return (in + padBegin + padEnd - span) / stride + 1;
}

Extent ceilDiv(Extent a, Extent b) { return (a + b - 1) / b; }

// True if both extents are known (build-time dimensions may be -1) and differ.
bool differ(Extent a, Extent b) { return a >= 0 && b >= 0 && a != b; }

}  // namespace

int32_t findAttribute(char const* name) noexcept {
  for (int32_t i = 0; i < kNbAttributes; ++i) {
    if (std::strcmp(kAttributes[i].name, name) == 0) {
      return i;
    }
  }
  return -1;
}

void* attributeStorage(SparseConvAttributes& attributes, AttributeSpec const& spec) noexcept {
  return static_cast<char*>(static_cast<void*>(&attributes)) + spec.offset;
}

void const* attributeStorage(SparseConvAttributes const& attributes, AttributeSpec const& spec) noexcept {
  return static_cast<char const*>(static_cast<void const*>(&attributes)) + spec.offset;
}

FieldStatus parseField(FieldView const& field, SparseConvAttributes& attributes, int32_t& nbInputs, bool* seen,
                       Message& error) noexcept {
  if (field.name == nullptr) {
    say(error, "a plugin field has no name");
    return FieldStatus::kError;
  }
  if (std::strcmp(field.name, kNbInputsField) == 0) {
    if (field.type != FieldType::kInt32 || field.length != 1 || field.data == nullptr) {
      say(error, "field %s must be one int32", kNbInputsField);
      return FieldStatus::kError;
    }
    std::memcpy(&nbInputs, field.data, kValueSize);
    return FieldStatus::kOk;
  }
  int32_t const index = findAttribute(field.name);
  if (index < 0) {
    return FieldStatus::kUnknown;
  }
  AttributeSpec const& spec = kAttributes[index];
  if (field.type != spec.type || field.length != spec.length || field.data == nullptr) {
    say(error, "attribute %s must be %d %s value(s), got %d of another type or length", spec.name, spec.length,
        spec.type == FieldType::kFloat32 ? "float32" : "int32", field.length);
    return FieldStatus::kError;
  }
  std::memcpy(attributeStorage(attributes, spec), field.data, kValueSize * static_cast<size_t>(spec.length));
  seen[index] = true;
  return FieldStatus::kOk;
}

bool finishParsing(SparseConvAttributes const& attributes, bool const* seen, Message& error) noexcept {
  for (char const* required : kRequiredAttributes) {
    if (!seen[findAttribute(required)]) {
      say(error, "attribute %s is required", required);
      return false;
    }
  }
  return validateAttributes(attributes, error);
}

bool validateAttributes(SparseConvAttributes const& a, Message& error) noexcept {
  Extent const unknown[kRank]{0, 0, 0, 0};  // the sizes do not matter to the attribute check
  char const* problem = checkSparseConv2dAttributes(toParams(a, unknown, unknown));
  if (problem == nullptr && (a.pads[2] < 0 || a.pads[3] < 0)) {
    problem = "padding (bottom, right) must be >= 0";
  }
  if (problem != nullptr) {
    say(error,
        "%s (kernel_shape %d,%d strides %d,%d dilations %d,%d pads %d,%d,%d,%d group %d tile %d activation %d "
        "post_activation %d)",
        problem, a.kernelShape[0], a.kernelShape[1], a.strides[0], a.strides[1], a.dilations[0], a.dilations[1],
        a.pads[0], a.pads[1], a.pads[2], a.pads[3], a.group, a.tile, a.activation, a.postActivation);
    return false;
  }
  return true;
}

bool nhwcCapable(SparseConvAttributes const& a, Extent inChannels, Extent outChannels) noexcept {
  // Every conv since the tile kernels take row strides (padded kHWC8 rows, grouped convs' channel slices);
  // unknown channel counts (-1) pass here and are checked with the real shapes.
  return a.group >= 1 && (inChannels < 0 || inChannels % a.group == 0) &&
         (outChannels < 0 || outChannels % a.group == 0);
}

NhwcWorkspace nhwcWorkspace(SparseConvParams const& p, size_t elementSize) noexcept {
  auto const aligned = [](size_t bytes) { return (bytes + 255) / 256 * 256; };
  int64_t const tiles = static_cast<int64_t>(p.tilesH()) * p.tilesW();
  int64_t const capacity = tiles * p.tile * p.tile;
  size_t const taps = static_cast<size_t>(p.kernel_h) * static_cast<size_t>(p.kernel_w);
  size_t const inPerGroup = p.groups >= 1 ? static_cast<size_t>(p.in_channels / p.groups) : 0;
  NhwcWorkspace w{};
  w.capacity = capacity > 0 && capacity <= INT32_MAX ? static_cast<int32_t>(capacity) : 0;
  w.cells = 0;
  w.count = aligned(static_cast<size_t>(w.capacity) * sizeof(int32_t));
  w.weight = w.count + aligned(sizeof(int32_t));
  w.bias = w.weight + aligned(taps * inPerGroup * static_cast<size_t>(p.out_channels) * elementSize);
  w.bytes = w.bias + aligned(static_cast<size_t>(p.out_channels) * sizeof(float));
  return w;
}

SparseConvParams toParams(SparseConvAttributes const& a, Extent const* x, Extent const* cache) noexcept {
  SparseConvParams p{};
  p.batch = static_cast<int32_t>(x[0]);
  p.in_channels = static_cast<int32_t>(x[1]);
  p.in_h = static_cast<int32_t>(x[2]);
  p.in_w = static_cast<int32_t>(x[3]);
  p.out_channels = static_cast<int32_t>(cache[1]);
  p.out_h = static_cast<int32_t>(cache[2]);
  p.out_w = static_cast<int32_t>(cache[3]);
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
  return p;
}

bool isValidIoCount(int32_t nbInputs, int32_t nbOutputs) noexcept {
  return (nbInputs == kNbInputsPlain || nbInputs == kNbInputsWithResidual) && nbOutputs == kNbOutputs;
}

bool checkShapes(SparseConvAttributes const& a, InputDims const& in, int32_t nbInputs, Message& error) noexcept {
  if (nbInputs < kNbInputsPlain || nbInputs > kNbInputsWithResidual) {
    say(error, "expects 5 or 6 inputs, got %d", nbInputs);
    return false;
  }
  for (int32_t i = 0; i < nbInputs; ++i) {
    int32_t const rank = i == kInBias ? 1 : kRank;
    if (in.nbDims[i] != rank) {
      say(error, "input %d must have rank %d, got %d", i, rank, in.nbDims[i]);
      return false;
    }
  }
  Extent const* x = in.d[kInX];
  Extent const* mask = in.d[kInMask];
  Extent const* cache = in.d[kInCache];
  Extent const* weight = in.d[kInWeight];
  Extent const* bias = in.d[kInBias];
  Extent const* residual = in.d[kInResidual];
  bool const hasResidual = nbInputs == kNbInputsWithResidual;

  bool const batchOk = !differ(x[0], mask[0]) && !differ(x[0], cache[0]) && !(hasResidual && differ(x[0], residual[0]));
  bool const outChannelsOk =
      !differ(cache[1], weight[0]) && !differ(cache[1], bias[0]) && (weight[0] < 0 || weight[0] % a.group == 0);
  bool const inChannelsOk = weight[1] < 0 || !differ(x[1], weight[1] * a.group);
  if (!batchOk || !outChannelsOk || !inChannelsOk) {
    say(error,
        "inconsistent inputs: x [%lld,%lld,..], tile_mask [%lld,..], cache_in [%lld,%lld,..], "
        "weight [%lld,%lld,..], bias [%lld], group %d",
        x[0], x[1], mask[0], cache[0], cache[1], weight[0], weight[1], bias[0], a.group);
    return false;
  }
  if (differ(weight[2], a.kernelShape[0]) || differ(weight[3], a.kernelShape[1])) {
    say(error, "weight is %lldx%lld but kernel_shape is %dx%d", weight[2], weight[3], a.kernelShape[0],
        a.kernelShape[1]);
    return false;
  }
  // The kernels take only the top/left pads: the bottom/right ones are implied by cache_in's size,
  // which must therefore be exactly the convolution's output size.
  Extent const expectH =
      x[2] < 0 ? -1 : convOutputSize(x[2], a.kernelShape[0], a.strides[0], a.dilations[0], a.pads[0], a.pads[2]);
  Extent const expectW =
      x[3] < 0 ? -1 : convOutputSize(x[3], a.kernelShape[1], a.strides[1], a.dilations[1], a.pads[1], a.pads[3]);
  if ((x[2] >= 0 && expectH < 1) || (x[3] >= 0 && expectW < 1) || differ(cache[2], expectH) ||
      differ(cache[3], expectW)) {
    say(error, "cache_in is %lldx%lld but the convolution of a %lldx%lld input gives %lldx%lld", cache[2], cache[3],
        x[2], x[3], expectH, expectW);
    return false;
  }
  Extent const tilesH = cache[2] < 0 ? -1 : ceilDiv(cache[2], a.tile);
  Extent const tilesW = cache[3] < 0 ? -1 : ceilDiv(cache[3], a.tile);
  if (differ(mask[1], 1) || differ(mask[2], tilesH) || differ(mask[3], tilesW)) {
    say(error, "tile_mask is [%lld,%lld,%lld] but tile %d over a %lldx%lld output needs [1,%lld,%lld]", mask[1],
        mask[2], mask[3], a.tile, cache[2], cache[3], tilesH, tilesW);
    return false;
  }
  for (int32_t i = 1; hasResidual && i < kRank; ++i) {
    if (differ(residual[i], cache[i])) {
      say(error, "residual must have cache_in's shape");
      return false;
    }
  }
  return true;
}

size_t serialSize() noexcept { return sizeof(kSerialMagic) + tableWords() * kValueSize + sizeof(int32_t); }

void serialize(SparseConvAttributes const& attributes, int32_t nbInputs, void* buffer) noexcept {
  char* cursor = static_cast<char*>(buffer);
  std::memcpy(cursor, &kSerialMagic, sizeof(kSerialMagic));
  cursor += sizeof(kSerialMagic);
  for (AttributeSpec const& spec : kAttributes) {
    size_t const bytes = kValueSize * static_cast<size_t>(spec.length);
    std::memcpy(cursor, attributeStorage(attributes, spec), bytes);
    cursor += bytes;
  }
  std::memcpy(cursor, &nbInputs, sizeof(nbInputs));
}

bool deserialize(void const* data, size_t length, SparseConvAttributes& attributes, int32_t& nbInputs,
                 Message& error) noexcept {
  if (data == nullptr || length != serialSize()) {
    say(error, "serialized plugin has %zu bytes, expected %zu: engine built with another plugin version?", length,
        serialSize());
    return false;
  }
  char const* cursor = static_cast<char const*>(data);
  uint32_t magic{0};
  std::memcpy(&magic, cursor, sizeof(magic));
  cursor += sizeof(magic);
  if (magic != kSerialMagic) {
    say(error, "serialized plugin has an unknown layout (0x%08x)", magic);
    return false;
  }
  for (AttributeSpec const& spec : kAttributes) {
    size_t const bytes = kValueSize * static_cast<size_t>(spec.length);
    std::memcpy(attributeStorage(attributes, spec), cursor, bytes);
    cursor += bytes;
  }
  std::memcpy(&nbInputs, cursor, sizeof(nbInputs));
  return validateAttributes(attributes, error);
}

}  // namespace passrt::trt
