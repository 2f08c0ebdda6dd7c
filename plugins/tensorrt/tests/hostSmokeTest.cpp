// Host-only smoke test of the PassSparseConv2d plugin, built and run by
// tests/plugins/test_tensorrt_plugin.py (test_plugin_host_smoke) against TensorRT 8 or 10 headers.
//
// The plugin's calls out of its own code are few (TensorRT's getLogger and getPluginRegistry,
// cudaMemcpyAsync, cudaMalloc/cudaFree/cudaStreamIsCapturing, cudaGetErrorString, passrt::sparseConv2d
// and the NHWC tile kernels' entry points),
// so stand-ins here record them and this
// program plays TensorRT: create from ONNX-style fields, query formats, configure with good and bad
// shapes, enqueue, serialize and restore. No TensorRT library and no GPU are needed.
#include "check.h"
#include "passSparseConv2dPlugin.h"
#include "passrt_kernels.h"
#include "passrt_tiles.h"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace nvinfer1;
using passrt::trt::PassSparseConv2dPlugin;
using passrt::trt::PassSparseConv2dPluginCreator;

namespace {
std::vector<std::string> gLog;

bool logged(char const* needle) {
  for (auto const& line : gLog) {
    if (line.find(needle) != std::string::npos) {
      return true;
    }
  }
  return false;
}

class CapturingLogger : public ILogger {
 public:
  void log(Severity, AsciiChar const* msg) noexcept override { gLog.push_back(msg); }
} gLogger;

struct Launch {
  int calls = 0;
  passrt::SparseConvParams p{};
  passrt::DataType dtype{};
  void const* input = nullptr;
  void const* weight = nullptr;
  void const* bias = nullptr;
  void const* residual = nullptr;
  float const* mask = nullptr;
  void* output = nullptr;
} gLaunch;

// The channel-last path's calls, in order ("layout", "cells", "conv" or "depthwise"), with what they got.
struct Nhwc {
  std::vector<std::string> calls;
  passrt::SparseConvParams p{};
  passrt::DataType dtype{};
  void const* input = nullptr;
  void const* weight = nullptr;
  float const* bias = nullptr;
  void const* residual = nullptr;
  void* output = nullptr;
  float const* mask = nullptr;
  passrt::CellRange range{};
  void* layoutWeight = nullptr;
} gNhwc;

// cudaMalloc / cudaFree (the laid-out weight's memory) and whether the stream is being captured.
struct Memory {
  int allocs = 0, frees = 0;
  bool fail = false;       // cudaMalloc fails
  bool capturing = false;  // cudaStreamIsCapturing says a capture is running
  size_t bytes = 0;
  void* last = nullptr;
} gMemory;
alignas(256) char gDevice[8][1 << 14];  // what the stand-in cudaMalloc hands out, round robin

// Where the last kernelLayoutCuda wrote: kept across frames (gNhwc is reset per frame), since a frame that
// reuses the laid-out weight has no layout call.
struct Laid {
  void const* weight = nullptr;
  float const* bias = nullptr;
} gLaid;

struct Copy {
  int calls = 0;
  size_t bytes = 0;
  void* dst = nullptr;
  void const* src = nullptr;
} gCopy;
}  // namespace

// Stand-ins for libnvinfer, libcudart and the kernels.
extern "C" nvinfer1::IPluginRegistry* getPluginRegistry() noexcept {
  return nullptr;  // No registry: errors go to the logger below.
}
extern "C" nvinfer1::ILogger* getLogger() noexcept { return &gLogger; }
extern "C" cudaError_t cudaMemcpyAsync(void* dst, void const* src, size_t count, cudaMemcpyKind, cudaStream_t) {
  ++gCopy.calls;
  gCopy.bytes = count;
  gCopy.dst = dst;
  gCopy.src = src;
  return cudaSuccess;
}
extern "C" char const* cudaGetErrorString(cudaError_t) { return "stub error"; }
extern "C" cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  if (gMemory.fail || bytes > sizeof gDevice[0]) {
    return cudaErrorMemoryAllocation;
  }
  *ptr = gMemory.last = gDevice[gMemory.allocs++ % 8];
  gMemory.bytes = bytes;
  return cudaSuccess;
}
extern "C" cudaError_t cudaFree(void*) {
  ++gMemory.frees;
  return cudaSuccess;
}
extern "C" cudaError_t cudaStreamIsCapturing(cudaStream_t, cudaStreamCaptureStatus* status) {
  *status = gMemory.capturing ? cudaStreamCaptureStatusActive : cudaStreamCaptureStatusNone;
  return cudaSuccess;
}
namespace passrt {
cudaError_t sparseConv2d(SparseConvParams const& p, DataType dtype, void const* input, void const* weight,
                         void const* bias, void const* residual, float const* tile_mask, void* output, cudaStream_t) {
  ++gLaunch.calls;
  gLaunch.p = p;
  gLaunch.dtype = dtype;
  gLaunch.input = input;
  gLaunch.weight = weight;
  gLaunch.bias = bias;
  gLaunch.residual = residual;
  gLaunch.mask = tile_mask;
  gLaunch.output = output;
  return cudaSuccess;
}
cudaError_t kernelLayoutCuda(const SparseConvParams& p, DataType dtype, const void* weight, const void* bias,
                             void* weightOut, float* biasOut, cudaStream_t) {
  gNhwc.calls.push_back("layout");
  gNhwc.p = p;
  gNhwc.dtype = dtype;
  gNhwc.weight = weight;
  gNhwc.layoutWeight = weightOut;
  gLaid.weight = weightOut;
  gNhwc.bias = gLaid.bias = biasOut;
  (void)bias;
  return cudaSuccess;
}
cudaError_t activeCellsCuda(int32_t, int32_t, int32_t, const float* mask, int32_t* cells, int32_t* count,
                            cudaStream_t) {
  gNhwc.calls.push_back("cells");
  gNhwc.mask = mask;
  gNhwc.range.cells = cells;
  gNhwc.range.count = count;
  return cudaSuccess;
}
// Records a tile kernel launch; it must read the weight and bias kernelLayoutCuda wrote.
cudaError_t recordTileLaunch(char const* kind, const SparseConvParams& p, const void* input, const void* weight,
                             const float* bias, const void* residual, CellRange cells, void* output) {
  gNhwc.calls.push_back(kind);
  gNhwc.p = p;
  gNhwc.input = input;
  gNhwc.residual = residual;
  gNhwc.output = output;
  gNhwc.range = cells;
  return weight == gLaid.weight && bias == gLaid.bias ? cudaSuccess : cudaErrorInvalidValue;
}
cudaError_t convCellsNhwcCuda(const SparseConvParams& p, DataType, const void* input, bool, const void* weight,
                              const float* bias, const void* residual, CellRange cells, void* output, bool,
                              cudaStream_t) {
  return recordTileLaunch("conv", p, input, weight, bias, residual, cells, output);
}
cudaError_t depthwiseCellsNhwcCuda(const SparseConvParams& p, DataType, const void* input, const void* weight,
                                   const float* bias, const void* residual, CellRange cells, void* output, bool,
                                   cudaStream_t) {
  return recordTileLaunch("depthwise", p, input, weight, bias, residual, cells, output);
}
}  // namespace passrt

namespace {
// Geometry: x [1,4,10,10], 3x3 kernel, stride 2, pads (top, left, bottom, right) 1,0,1,2, group 2,
// so weight [8,2,3,3] and output 5x5 ((10+1+1-3)/2+1 = 5, (10+0+2-3)/2+1 = 5); tile 2: 3x3 tiles.
struct Fields {
  int32_t kernel[2]{3, 3};
  int32_t strides[2]{2, 2};
  int32_t dilations[2]{1, 1};
  int32_t pads[4]{1, 0, 1, 2};
  int32_t group{2};
  int32_t tile{2};
  int32_t activation{6};
  float alpha{0.2F};
  int32_t post{1};
  std::vector<PluginField> list;
  PluginFieldCollection fc{};

  PluginFieldCollection const* make(char const* skip = nullptr, bool alphaAsInt = false) {
    list.clear();
    auto add = [&](char const* name, void const* data, PluginFieldType type, int32_t n) {
      if (skip == nullptr || std::strcmp(skip, name) != 0) {
        list.emplace_back(name, data, type, n);
      }
    };
    add("kernel_shape", kernel, PluginFieldType::kINT32, 2);
    add("strides", strides, PluginFieldType::kINT32, 2);
    add("dilations", dilations, PluginFieldType::kINT32, 2);
    add("pads", pads, PluginFieldType::kINT32, 4);
    add("group", &group, PluginFieldType::kINT32, 1);
    add("tile", &tile, PluginFieldType::kINT32, 1);
    add("activation", &activation, PluginFieldType::kINT32, 1);
    add("activation_alpha", &alpha, alphaAsInt ? PluginFieldType::kINT32 : PluginFieldType::kFLOAT32, 1);
    add("post_activation", &post, PluginFieldType::kINT32, 1);
    fc.nbFields = static_cast<int32_t>(list.size());
    fc.fields = list.data();
    return &fc;
  }
};

Dims dims(int32_t rank, int64_t a, int64_t b = 0, int64_t c = 0, int64_t d = 0) {
  Dims r{};
  r.nbDims = rank;
  int64_t const v[4] = {a, b, c, d};
  for (int32_t i = 0; i < rank; ++i) {
    r.d[i] = v[i];  // int32 in TensorRT 8, int64 in 10
  }
  return r;
}

// Descriptors of the inputs then the output; cacheW != 5 makes cache_in (and the output) inconsistent.
// `format` goes to the data tensors (x, cache_in, residual, output); xC/group/cout give x's channels, the
// weight's [cout, xC / group, 3, 3] and the cache's channels (the default: the grouped conv the Fields
// below describe).
std::vector<PluginTensorDesc> descs(DataType type, int32_t nbInputs, int64_t cacheW = 5,
                                    TensorFormat format = TensorFormat::kLINEAR, int64_t xC = 4, int64_t group = 2,
                                    int64_t batch = 1, int64_t cout = 8) {
  Dims const shapes[6] = {dims(4, batch, xC, 10, 10),        dims(4, batch, 1, 3, 3), dims(4, batch, cout, 5, cacheW),
                          dims(4, cout, xC / group, 3, 3), dims(1, cout),          dims(4, batch, cout, 5, cacheW)};
  std::vector<PluginTensorDesc> d(static_cast<size_t>(nbInputs) + 1);
  for (int32_t i = 0; i <= nbInputs; ++i) {
    d[i].dims = i == nbInputs ? shapes[2] : shapes[i];
    d[i].type = i == 1 ? DataType::kFLOAT : type;
    bool const data = i == 0 || i == 2 || i == 5 || i == nbInputs;
    d[i].format = data ? format : TensorFormat::kLINEAR;
    d[i].scale = -1.0F;
  }
  return d;
}

std::vector<DynamicPluginTensorDesc> dynamic(std::vector<PluginTensorDesc> const& d) {
  std::vector<DynamicPluginTensorDesc> r(d.size());
  for (size_t i = 0; i < d.size(); ++i) {
    r[i].desc = d[i];
    r[i].min = d[i].dims;
    r[i].max = d[i].dims;
  }
  return r;
}

float gMask[9];
char gX[1], gW[1], gB[1], gCache[1], gRes[1], gOut[1];

int32_t runEnqueue(PassSparseConv2dPlugin& plugin, DataType type, int32_t nbInputs, bool aliasCache = false,
                   int64_t cacheW = 5) {
  auto d = descs(type, nbInputs, cacheW);
  void const* inputs[6] = {gX, gMask, gCache, gW, gB, gRes};
  void* outputs[1] = {aliasCache ? static_cast<void*>(gCache) : static_cast<void*>(gOut)};
  gLaunch = Launch{};
  gCopy = Copy{};
  return plugin.enqueue(d.data(), d.data() + nbInputs, inputs, outputs, nullptr, nullptr);
}

// The channel-last path: descriptors `d`, a workspace (or none), big enough buffers for a batch of two.
alignas(256) char gWorkspace[1 << 16];
float gMask2[18];
char gX2[2 * 8 * 10 * 10 * 4], gCache2[2 * 8 * 5 * 5 * 4], gRes2[2 * 8 * 5 * 5 * 4], gOut2[2 * 8 * 5 * 5 * 4];
int32_t runNhwc(PassSparseConv2dPlugin& plugin, std::vector<PluginTensorDesc> const& d, int32_t nbInputs,
                bool withWorkspace = true) {
  void const* inputs[6] = {gX2, gMask2, gCache2, gW, gB, gRes2};
  void* outputs[1] = {gOut2};
  gLaunch = Launch{};
  gCopy = Copy{};
  gNhwc = Nhwc{};
  return plugin.enqueue(d.data(), d.data() + nbInputs, inputs, outputs, withWorkspace ? gWorkspace : nullptr,
                        nullptr);
}

#if NV_TENSORRT_MAJOR >= 10
PassSparseConv2dPlugin* create(PassSparseConv2dPluginCreator& creator, PluginFieldCollection const* fc) {
  return static_cast<PassSparseConv2dPlugin*>(creator.createPlugin("layer", fc, TensorRTPhase::kBUILD));
}
void release(IPluginV3* p) { delete p; }
// 0 if configurePlugin() accepted the shapes without reporting anything. With every extent known, then
// onShapeChange() too, as TensorRT calls it before running (where the laid-out weight's memory is made).
int32_t configure(PassSparseConv2dPlugin& plugin, std::vector<PluginTensorDesc> const& d, int32_t nbInputs) {
  auto dd = dynamic(d);
  gLog.clear();
  int32_t status = plugin.configurePlugin(dd.data(), nbInputs, dd.data() + nbInputs, 1);
  bool known = true;
  for (auto const& desc : d) {
    for (int32_t i = 0; i < desc.dims.nbDims; ++i) {
      known = known && desc.dims.d[i] >= 0;
    }
  }
  if (status == 0 && known && gLog.empty()) {
    status = plugin.onShapeChange(d.data(), nbInputs, d.data() + nbInputs, 1);
  }
  return status != 0 ? status : (gLog.empty() ? 0 : -2);
}
bool supports(PassSparseConv2dPlugin& plugin, std::vector<PluginTensorDesc> const& d, int32_t pos, int32_t nbInputs) {
  auto dd = dynamic(d);
  return plugin.supportsFormatCombination(pos, dd.data(), nbInputs, 1);
}
size_t workspace(PassSparseConv2dPlugin& plugin, std::vector<PluginTensorDesc> const& d, int32_t nbInputs) {
  auto dd = dynamic(d);
  return plugin.getWorkspaceSize(dd.data(), nbInputs, dd.data() + nbInputs, 1);
}
#else
PassSparseConv2dPlugin* create(PassSparseConv2dPluginCreator& creator, PluginFieldCollection const* fc) {
  return static_cast<PassSparseConv2dPlugin*>(creator.createPlugin("layer", fc));
}
void release(IPluginV2* p) {
  if (p != nullptr) {
    p->destroy();
  }
}
// 0 if configurePlugin() did not report anything (it cannot fail in TensorRT 8).
int32_t configure(PassSparseConv2dPlugin& plugin, std::vector<PluginTensorDesc> const& d, int32_t nbInputs) {
  auto dd = dynamic(d);
  gLog.clear();
  plugin.configurePlugin(dd.data(), nbInputs, dd.data() + nbInputs, 1);
  return gLog.empty() ? 0 : -1;
}
bool supports(PassSparseConv2dPlugin& plugin, std::vector<PluginTensorDesc> const& d, int32_t pos, int32_t nbInputs) {
  return plugin.supportsFormatCombination(pos, d.data(), nbInputs, 1);
}
size_t workspace(PassSparseConv2dPlugin& plugin, std::vector<PluginTensorDesc> const& d, int32_t nbInputs) {
  return plugin.getWorkspaceSize(d.data(), nbInputs, d.data() + nbInputs, 1);
}
#endif
}  // namespace

int main() {
  PassSparseConv2dPluginCreator creator;
  CHECK(std::strcmp(creator.getPluginName(), "PassSparseConv2d") == 0);
  CHECK(std::strcmp(creator.getPluginVersion(), "1") == 0);
  CHECK(std::strcmp(creator.getPluginNamespace(), "passrt") == 0);

  // The advertised fields: the ONNX attributes, in order, with their types and lengths.
  char const* names[] = {"kernel_shape", "strides",    "dilations",        "pads",           "group",
                         "tile",         "activation", "activation_alpha", "post_activation"};
  int32_t const lengths[] = {2, 2, 2, 4, 1, 1, 1, 1, 1};
  PluginFieldCollection const* advertised = creator.getFieldNames();
  CHECK(advertised != nullptr && advertised->nbFields == 9);
  for (int32_t i = 0; advertised != nullptr && i < advertised->nbFields && i < 9; ++i) {
    CHECK(std::strcmp(advertised->fields[i].name, names[i]) == 0);
    CHECK(advertised->fields[i].length == lengths[i]);
    CHECK(advertised->fields[i].type == (i == 7 ? PluginFieldType::kFLOAT32 : PluginFieldType::kINT32));
  }

  // Rejected, with a message: a required attribute missing, a wrong type, a bad value, no fields.
  Fields f;
  gLog.clear();
  CHECK(create(creator, f.make("tile")) == nullptr);
  CHECK(logged("tile is required"));
  gLog.clear();
  CHECK(create(creator, f.make(nullptr, /* alphaAsInt = */ true)) == nullptr);
  CHECK(logged("activation_alpha"));
  f.activation = 42;
  gLog.clear();
  CHECK(create(creator, f.make()) == nullptr);
  CHECK(logged("activation"));
  f.activation = 6;
  CHECK(create(creator, nullptr) == nullptr);

  PassSparseConv2dPlugin* plugin = create(creator, f.make());
  CHECK(plugin != nullptr);
  if (plugin == nullptr) {
    return 1;
  }
  CHECK(std::strcmp(plugin->getPluginNamespace(), "passrt") == 0);
  CHECK(plugin->getNbOutputs() == 1);
#if PASSRT_TRT_ALIASED_IO
  {  // TensorRT >= 10.3: the build capability TensorRT asks for aliases cache_out to cache_in (state in place)
    auto* build = static_cast<nvinfer1::IPluginV3OneBuildV2*>(
        plugin->getCapabilityInterface(nvinfer1::PluginCapabilityType::kBUILD));
    CHECK(build != nullptr && build->getAliasedInput(0) == passrt::trt::kInCache && build->getAliasedInput(1) == -1);
  }
#endif

  // Formats: fp32 or fp16 x, everything else in x's type except the fp32 mask; linear only.
  for (int32_t nbInputs : {5, 6}) {
    for (DataType t : {DataType::kFLOAT, DataType::kHALF}) {
      auto d = descs(t, nbInputs);
      for (int32_t pos = 0; pos <= nbInputs; ++pos) {
        CHECK(supports(*plugin, d, pos, nbInputs));
      }
      d[1].type = DataType::kHALF;
      CHECK(!supports(*plugin, d, 1, nbInputs));
      d[1].type = DataType::kFLOAT;
      d[nbInputs].type = t == DataType::kFLOAT ? DataType::kHALF : DataType::kFLOAT;
      CHECK(!supports(*plugin, d, nbInputs, nbInputs));
      d[nbInputs].type = t;
      d[2].format = TensorFormat::kCHW4;
      CHECK(!supports(*plugin, d, 2, nbInputs));
    }
    CHECK(!supports(*plugin, descs(DataType::kINT8, nbInputs), 0, nbInputs));
  }
  CHECK(!supports(*plugin, descs(DataType::kFLOAT, 4), 0, 4));

  // Configure: consistent shapes pass, also with extents unknown at build time (-1); others fail.
  CHECK(configure(*plugin, descs(DataType::kFLOAT, 6), 6) == 0);
  auto wild = descs(DataType::kFLOAT, 6);
  for (auto& d : wild) {
    d.dims.d[0] = -1;
  }
  wild[0].dims.d[2] = -1;
  wild[2].dims.d[2] = -1;
  CHECK(configure(*plugin, wild, 6) == 0);
  CHECK(configure(*plugin, descs(DataType::kFLOAT, 6, /* cacheW = */ 6), 6) != 0);
  CHECK(logged("cache_in is 5x6"));
  auto badMask = descs(DataType::kFLOAT, 6);
  badMask[1].dims.d[3] = 4;
  CHECK(configure(*plugin, badMask, 6) != 0);
  CHECK(logged("tile_mask"));
  auto badWeight = descs(DataType::kFLOAT, 6);
  badWeight[3].dims.d[1] = 4;  // 4 x group 2 != C_in 4
  CHECK(configure(*plugin, badWeight, 6) != 0);
  CHECK(configure(*plugin, descs(DataType::kFLOAT, 6), 6) == 0);

  // Enqueue: one copy of the whole cache, then one launch with the attributes' geometry and the real shapes.
  CHECK(runEnqueue(*plugin, DataType::kFLOAT, 6) == 0);
  CHECK(gCopy.calls == 1 && gCopy.bytes == 8 * 5 * 5 * sizeof(float) && gCopy.dst == gOut && gCopy.src == gCache);
  CHECK(gLaunch.calls == 1);
  passrt::SparseConvParams const& p = gLaunch.p;
  CHECK(p.batch == 1 && p.in_channels == 4 && p.in_h == 10 && p.in_w == 10);
  CHECK(p.out_channels == 8 && p.out_h == 5 && p.out_w == 5);
  CHECK(p.kernel_h == 3 && p.kernel_w == 3 && p.stride_h == 2 && p.stride_w == 2);
  CHECK(p.dilation_h == 1 && p.dilation_w == 1 && p.pad_top == 1 && p.pad_left == 0);
  CHECK(p.groups == 2 && p.tile == 2 && p.tilesH() == 3 && p.tilesW() == 3);
  CHECK(p.act == passrt::Activation::kLeakyRelu && p.act_alpha == 0.2F && p.post_act == passrt::Activation::kRelu);
  CHECK(gLaunch.dtype == passrt::DataType::kFloat32);
  CHECK(gLaunch.input == gX && gLaunch.mask == gMask && gLaunch.weight == gW && gLaunch.bias == gB);
  CHECK(gLaunch.residual == gRes && gLaunch.output == gOut);

  // fp16: half the bytes. cache_in aliased to cache_out: no copy. Wrong runtime shapes: nothing launched.
  CHECK(runEnqueue(*plugin, DataType::kHALF, 6) == 0);
  CHECK(gCopy.bytes == 8 * 5 * 5 * 2 && gLaunch.dtype == passrt::DataType::kFloat16);
  CHECK(runEnqueue(*plugin, DataType::kFLOAT, 6, /* aliasCache = */ true) == 0);
  CHECK(gCopy.calls == 0 && gLaunch.calls == 1 && gLaunch.output == gCache);
  gLog.clear();
  CHECK(runEnqueue(*plugin, DataType::kFLOAT, 6, false, /* cacheW = */ 6) != 0);
  CHECK(gLaunch.calls == 0 && gCopy.calls == 0 && !gLog.empty());

  // Without the residual input, no residual reaches the kernel.
  CHECK(configure(*plugin, descs(DataType::kFLOAT, 5), 5) == 0);
  CHECK(runEnqueue(*plugin, DataType::kFLOAT, 5) == 0);
  CHECK(gLaunch.calls == 1 && gLaunch.residual == nullptr);

  // Never configured: whether a residual is connected is unknown, so it refuses to run.
  PassSparseConv2dPlugin* fresh = create(creator, f.make());
  gLog.clear();
  CHECK(fresh != nullptr && runEnqueue(*fresh, DataType::kFLOAT, 6) != 0);
  CHECK(gLaunch.calls == 0 && logged("input count"));
  release(fresh);

  // Serialization round trip keeps the attributes and the input count (configured last with 6).
  CHECK(configure(*plugin, descs(DataType::kFLOAT, 6), 6) == 0);
#if NV_TENSORRT_MAJOR >= 10
  PluginFieldCollection const* serial = plugin->getFieldsToSerialize();
  CHECK(serial != nullptr && serial->nbFields == 10);
  auto* restored = static_cast<PassSparseConv2dPlugin*>(creator.createPlugin("layer", serial, TensorRTPhase::kRUNTIME));
  CHECK(restored != nullptr);
  auto* attached =
      restored != nullptr ? static_cast<PassSparseConv2dPlugin*>(restored->attachToContext(nullptr)) : nullptr;
  CHECK(attached != nullptr && runEnqueue(*attached, DataType::kFLOAT, 6) == 0);
  CHECK(gLaunch.calls == 1 && gLaunch.residual == gRes && gLaunch.p.pad_top == 1 && gLaunch.p.act_alpha == 0.2F);
  auto* cloned = static_cast<PassSparseConv2dPlugin*>(plugin->clone());
  CHECK(cloned != nullptr && runEnqueue(*cloned, DataType::kFLOAT, 6) == 0);
  CHECK(plugin->getCapabilityInterface(PluginCapabilityType::kCORE) != nullptr);
  CHECK(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD) != nullptr);
  CHECK(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME) != nullptr);
  DataType outType{};
  DataType const inTypes[6] = {DataType::kHALF, DataType::kFLOAT, DataType::kHALF,
                               DataType::kHALF, DataType::kHALF,  DataType::kHALF};
  CHECK(plugin->getOutputDataTypes(&outType, 1, inTypes, 6) == 0 && outType == DataType::kHALF);
  delete cloned;
  delete attached;
  delete restored;
#else
  std::vector<char> blob(plugin->getSerializationSize());
  plugin->serialize(blob.data());
  auto* restored = static_cast<PassSparseConv2dPlugin*>(creator.deserializePlugin("layer", blob.data(), blob.size()));
  CHECK(restored != nullptr && runEnqueue(*restored, DataType::kFLOAT, 6) == 0);
  CHECK(gLaunch.calls == 1 && gLaunch.residual == gRes && gLaunch.p.pad_top == 1 && gLaunch.p.act_alpha == 0.2F);
  std::vector<char> again(blob.size());
  if (restored != nullptr) {
    restored->serialize(again.data());
  }
  CHECK(again == blob);
  gLog.clear();
  CHECK(creator.deserializePlugin("layer", blob.data(), blob.size() - 1) == nullptr);
  CHECK(logged("serialized plugin"));
  blob[0] = static_cast<char>(blob[0] ^ 1);
  CHECK(creator.deserializePlugin("layer", blob.data(), blob.size()) == nullptr);
  IPluginV2DynamicExt* cloned = plugin->clone();
  CHECK(cloned != nullptr && runEnqueue(*static_cast<PassSparseConv2dPlugin*>(cloned), DataType::kFLOAT, 6) == 0);
  DataType const inTypes[6] = {DataType::kHALF, DataType::kFLOAT, DataType::kHALF,
                               DataType::kHALF, DataType::kHALF,  DataType::kHALF};
  CHECK(plugin->getOutputDataType(0, inTypes, 6) == DataType::kHALF);
  creator.setPluginNamespace("other");
  PassSparseConv2dPlugin* renamed = create(creator, f.make());
  CHECK(renamed != nullptr && std::strcmp(renamed->getPluginNamespace(), "other") == 0);
  release(renamed);
  release(cloned);
  release(restored);
#endif

  // Channel-last formats for this grouped conv too (the GEMM tile kernel runs one GEMM per group over its
  // slice of the rows): workspace = cells (36 ints: 256 B) + count (256) + weight 3*3*2*8 floats (768) + bias (256).
  {
    auto const g2 = descs(DataType::kFLOAT, 6, 5, TensorFormat::kHWC);
    CHECK(workspace(*plugin, g2, 6) == 256 + 256 + 768 + 256);
    for (int32_t nbInputs : {5, 6}) {
      CHECK(supports(*plugin, descs(DataType::kFLOAT, nbInputs, 5, TensorFormat::kHWC), 0, nbInputs));
      CHECK(supports(*plugin, descs(DataType::kHALF, nbInputs, 5, TensorFormat::kHWC8, 8, 2), 0, nbInputs));
    }
    CHECK(configure(*plugin, g2, 6) == 0);
    CHECK(runNhwc(*plugin, g2, 6) == 0);
    CHECK((gNhwc.calls == std::vector<std::string>{"layout", "cells", "conv"}));
    CHECK(gNhwc.p.groups == 2 && gNhwc.p.in_channels == 4 && gNhwc.p.out_channels == 8);
    CHECK(gNhwc.p.inStride() == 4 && gNhwc.p.outStride() == 8 && gLaunch.calls == 0);
  }
  // A groups-1 conv: fp32 kHWC, and fp16 kHWC8 (padded rows too).
  f.group = 1;
  PassSparseConv2dPlugin* gemm = create(creator, f.make());
  CHECK(gemm != nullptr);
  if (gemm == nullptr) {
    return 1;
  }
  for (int32_t nbInputs : {5, 6}) {
    auto d = descs(DataType::kFLOAT, nbInputs, 5, TensorFormat::kHWC, 4, 1);
    for (int32_t pos = 0; pos <= nbInputs; ++pos) {
      CHECK(supports(*gemm, d, pos, nbInputs));
    }
    d[2].format = TensorFormat::kLINEAR;  // every data tensor in x's format: no reformat between them
    CHECK(!supports(*gemm, d, 2, nbInputs));
    d[2].format = TensorFormat::kHWC;
    d[nbInputs].format = TensorFormat::kLINEAR;
    CHECK(!supports(*gemm, d, nbInputs, nbInputs));
    d[nbInputs].format = TensorFormat::kHWC;
    d[1].format = TensorFormat::kHWC;  // the mask, weight and bias stay linear
    CHECK(!supports(*gemm, d, 1, nbInputs));
    d[1].format = TensorFormat::kLINEAR;
    d[3].format = TensorFormat::kHWC;
    CHECK(!supports(*gemm, d, 3, nbInputs));
    auto h8 = descs(DataType::kHALF, nbInputs, 5, TensorFormat::kHWC8, 8, 1);
    for (int32_t pos = 0; pos <= nbInputs; ++pos) {
      CHECK(supports(*gemm, h8, pos, nbInputs));
    }
    CHECK(supports(*gemm, descs(DataType::kHALF, nbInputs, 5, TensorFormat::kHWC8, 4, 1), 0, nbInputs));  // padded
    CHECK(!supports(*gemm, descs(DataType::kHALF, nbInputs, 5, TensorFormat::kHWC, 4, 1), 0, nbInputs));  // fp32 only
    CHECK(!supports(*gemm, descs(DataType::kFLOAT, nbInputs, 5, TensorFormat::kHWC8, 8, 1), 0, nbInputs));  // fp16
    CHECK(supports(*gemm, descs(DataType::kHALF, nbInputs, 5, TensorFormat::kLINEAR, 4, 1), 0, nbInputs));
  }
  // Workspace: the cell list (9 tiles of 2x2 cells: 144 B), its count, the weight in the kernels' layout
  // (3*3*4*8 floats: 1152 B) and the fp32 bias (32 B), each 256-aligned; asked whatever the format shown
  // (TensorRT may ask before choosing), never for a conv the channel-last path cannot run.
  auto const nhwc = descs(DataType::kFLOAT, 6, 5, TensorFormat::kHWC, 4, 1);
  CHECK(workspace(*gemm, nhwc, 6) == 256 + 256 + 1280 + 256);
  CHECK(workspace(*gemm, descs(DataType::kFLOAT, 6, 5, TensorFormat::kLINEAR, 4, 1), 6) == 256 + 256 + 1280 + 256);
  int32_t const allocs = gMemory.allocs;
  CHECK(configure(*gemm, nhwc, 6) == 0);
  CHECK(gMemory.allocs == allocs + 1 && gMemory.bytes == 1280 + 256);  // the laid-out weight's memory, made here
  void* const laidMemory = gMemory.last;
  // Enqueue: the cache copy, the weight laid out (into the plugin's memory), the image's cells, one GEMM launch.
  CHECK(runNhwc(*gemm, nhwc, 6) == 0);
  CHECK(gLaunch.calls == 0 && gCopy.calls == 1 && gCopy.bytes == 8 * 5 * 5 * sizeof(float));
  CHECK((gNhwc.calls == std::vector<std::string>{"layout", "cells", "conv"}));
  CHECK(gNhwc.dtype == passrt::DataType::kFloat32 && gNhwc.weight == gW);
  CHECK(gNhwc.p.batch == 1 && gNhwc.p.groups == 1 && gNhwc.p.in_channels == 4 && gNhwc.p.out_channels == 8);
  CHECK(gNhwc.p.tile == 2 && gNhwc.p.act == passrt::Activation::kLeakyRelu);
  CHECK(gNhwc.input == gX2 && gNhwc.residual == gRes2 && gNhwc.output == gOut2 && gNhwc.mask == gMask2);
  CHECK(gNhwc.range.capacity == 36 && static_cast<void const*>(gNhwc.range.cells) == gWorkspace);
  CHECK(gNhwc.layoutWeight == laidMemory && gNhwc.p.inStride() == 4 && gNhwc.p.outStride() == 8);
  // The next frame reuses it: no layout launch (recordTileLaunch checks the kernel reads the laid-out weight).
  CHECK(runNhwc(*gemm, nhwc, 6) == 0);
  CHECK((gNhwc.calls == std::vector<std::string>{"cells", "conv"}));
  // A batch of two: image after image, each with its own mask, input, residual and cache rows.
  auto const two = descs(DataType::kFLOAT, 6, 5, TensorFormat::kHWC, 4, 1, 2);
  CHECK(configure(*gemm, two, 6) == 0);
  CHECK(gMemory.allocs == allocs + 1);  // same sizes: the memory (and the layout) are kept
  CHECK(runNhwc(*gemm, two, 6) == 0);
  CHECK((gNhwc.calls == std::vector<std::string>{"cells", "conv", "cells", "conv"}));
  CHECK(gNhwc.mask == gMask2 + 9 && gNhwc.input == gX2 + 4 * 10 * 10 * 4);
  CHECK(gNhwc.residual == gRes2 + 8 * 5 * 5 * 4 && gNhwc.output == gOut2 + 8 * 5 * 5 * 4);
  // No workspace: refused with a message, nothing launched.
  CHECK(configure(*gemm, nhwc, 6) == 0);
  gLog.clear();
  CHECK(runNhwc(*gemm, nhwc, 6, /* withWorkspace = */ false) != 0);
  CHECK(gNhwc.calls.empty() && gLaunch.calls == 0 && logged("workspace"));
  // A clone starts without the laid-out weight: its own memory (made at its first enqueue), its own layout.
  {
    auto* copy = static_cast<PassSparseConv2dPlugin*>(gemm->clone());
    CHECK(copy != nullptr);
    if (copy != nullptr) {
      CHECK(runNhwc(*copy, nhwc, 6) == 0);
      CHECK((gNhwc.calls == std::vector<std::string>{"layout", "cells", "conv"}));
      CHECK(gNhwc.layoutWeight == gMemory.last && gMemory.last != laidMemory);
      int32_t const frees = gMemory.frees;
      release(copy);
      CHECK(gMemory.frees == frees + 1);  // freed with the object
    }
  }
  // While a CUDA graph is being captured: no cudaMalloc, and a layout recorded into the graph is not taken as
  // done, so the first eager frame after it lays out again, and the next one does not.
  {
    PassSparseConv2dPlugin* cap = create(creator, f.make());
    CHECK(cap != nullptr);
    if (cap != nullptr) {
      CHECK(configure(*cap, nhwc, 6) == 0);
      int32_t const before = gMemory.allocs;
      gMemory.capturing = true;
      CHECK(runNhwc(*cap, nhwc, 6) == 0);
      CHECK((gNhwc.calls == std::vector<std::string>{"layout", "cells", "conv"}) && gMemory.allocs == before);
      gMemory.capturing = false;
      CHECK(runNhwc(*cap, nhwc, 6) == 0);
      CHECK((gNhwc.calls == std::vector<std::string>{"layout", "cells", "conv"}));
      CHECK(runNhwc(*cap, nhwc, 6) == 0);
      CHECK((gNhwc.calls == std::vector<std::string>{"cells", "conv"}));
      release(cap);
    }
  }
  // cudaMalloc failing: each frame lays out into the workspace (after the cell list and its count), as before.
  {
    gMemory.fail = true;
    PassSparseConv2dPlugin* ws = create(creator, f.make());
    CHECK(ws != nullptr);
    if (ws != nullptr) {
      CHECK(configure(*ws, nhwc, 6) == 0);
      for (int frame = 0; frame < 2; ++frame) {
        CHECK(runNhwc(*ws, nhwc, 6) == 0);
        CHECK((gNhwc.calls == std::vector<std::string>{"layout", "cells", "conv"}));
        CHECK(static_cast<char const*>(gNhwc.layoutWeight) == gWorkspace + 512);
      }
      gMemory.fail = false;  // the next non-captured frame makes the memory and lays out once more
      CHECK(runNhwc(*ws, nhwc, 6) == 0);
      CHECK((gNhwc.calls == std::vector<std::string>{"layout", "cells", "conv"}) && gNhwc.layoutWeight == gMemory.last);
      CHECK(runNhwc(*ws, nhwc, 6) == 0);
      CHECK((gNhwc.calls == std::vector<std::string>{"cells", "conv"}));
      release(ws);
    }
    gMemory.fail = false;
  }
  int32_t const freesBefore = gMemory.frees;
  release(gemm);
  CHECK(gMemory.frees == freesBefore + 1);

  // An fp16 head with 12 output channels from 4 (SSDLite's heads have 12 or 24): kHWC8 rows padded to 16 and 8,
  // on the tile path. The cache copy and the per-image offsets use the padded rows.
  {
    PassSparseConv2dPlugin* head = create(creator, f.make());
    CHECK(head != nullptr);
    if (head != nullptr) {
      for (int32_t nbInputs : {5, 6}) {
        auto const h = descs(DataType::kHALF, nbInputs, 5, TensorFormat::kHWC8, 4, 1, 1, 12);
        for (int32_t pos = 0; pos <= nbInputs; ++pos) {
          CHECK(supports(*head, h, pos, nbInputs));
        }
      }
      auto const h2 = descs(DataType::kHALF, 6, 5, TensorFormat::kHWC8, 4, 1, 2, 12);
      CHECK(configure(*head, h2, 6) == 0);
      CHECK(runNhwc(*head, h2, 6) == 0);
      CHECK((gNhwc.calls == std::vector<std::string>{"layout", "cells", "conv", "cells", "conv"}));
      CHECK(gNhwc.dtype == passrt::DataType::kFloat16 && gNhwc.p.out_channels == 12 && gNhwc.p.in_channels == 4);
      CHECK(gNhwc.p.inStride() == 8 && gNhwc.p.outStride() == 16 && gLaunch.calls == 0);
      CHECK(gCopy.bytes == 2 * 5 * 5 * 16 * 2);
      CHECK(gNhwc.input == gX2 + 10 * 10 * 8 * 2 && gNhwc.output == gOut2 + 5 * 5 * 16 * 2);
      CHECK(gNhwc.residual == gRes2 + 5 * 5 * 16 * 2);
      release(head);
    }
  }

  // A depthwise conv (groups == C_in == C_out = 8) in fp16 kHWC8, no residual: the depthwise tile kernel.
  f.group = 8;
  PassSparseConv2dPlugin* depthwise = create(creator, f.make());
  CHECK(depthwise != nullptr);
  if (depthwise == nullptr) {
    return 1;
  }
  auto const dw = descs(DataType::kHALF, 5, 5, TensorFormat::kHWC8, 8, 8);
  for (int32_t pos = 0; pos <= 5; ++pos) {
    CHECK(supports(*depthwise, dw, pos, 5));
  }
  CHECK(configure(*depthwise, dw, 5) == 0);
  CHECK(runNhwc(*depthwise, dw, 5) == 0);
  CHECK((gNhwc.calls == std::vector<std::string>{"layout", "cells", "depthwise"}));
  CHECK(gNhwc.dtype == passrt::DataType::kFloat16 && gNhwc.residual == nullptr && gNhwc.p.groups == 8);
  CHECK(gCopy.bytes == 8 * 5 * 5 * 2);
  release(depthwise);
  f.group = 2;

  return passrt::test::finish();
}
