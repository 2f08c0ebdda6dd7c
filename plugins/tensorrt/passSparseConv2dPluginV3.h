// PassSparseConv2d for TensorRT >= 10 (JetPack 6.1+, x86 containers): IPluginV3 with the V3One
// core/build/runtime capabilities and an IPluginCreatorV3One, the interface TensorRT 10 is built
// around (IPluginV2DynamicExt still works there but is deprecated). Include passSparseConv2dPlugin.h,
// which picks this header or passSparseConv2dPluginV2.h by the TensorRT version.
#pragma once

#include "passSparseConv2dPluginCommon.h"

#include "NvInferRuntime.h"

#include <cstdint>
#include <string>
#include <vector>

#if NV_TENSORRT_MAJOR < 10
#error "passSparseConv2dPluginV3.h needs TensorRT >= 10 headers; TensorRT 8 uses passSparseConv2dPluginV2.h"
#endif

// TensorRT >= 10.3 can alias a plugin output to an input (IPluginV3OneBuildV2::getAliasedInput, behind
// the builder's preview feature kALIASED_PLUGIN_IO_10_03): cache_out is then cache_in's buffer, the
// plugin writes the active tiles in place and launch() skips the whole-cache copy. Before 10.3 the
// plugin copies cache_in to cache_out every frame (correct, and the cost the cost model charges).
#if NV_TENSORRT_MAJOR > 10 || (NV_TENSORRT_MAJOR == 10 && NV_TENSORRT_MINOR >= 3)
#define PASSRT_TRT_ALIASED_IO 1
#else
#define PASSRT_TRT_ALIASED_IO 0
#endif

namespace passrt::trt {

#if PASSRT_TRT_ALIASED_IO
using PluginBuildCapability = nvinfer1::IPluginV3OneBuildV2;
#else
using PluginBuildCapability = nvinfer1::IPluginV3OneBuild;
#endif

// TensorRT 10 plugin. One object implements all three capabilities, as TensorRT's own V3 plugins
// do: the state is the attributes plus the number of inputs, so there is nothing to split.
class PassSparseConv2dPlugin : public nvinfer1::IPluginV3,
                               public nvinfer1::IPluginV3OneCore,
                               public PluginBuildCapability,
                               public nvinfer1::IPluginV3OneRuntime {
 public:
  // nbInputs is 5 or 6 when known (6: with residual), 0 until TensorRT tells the plugin.
  PassSparseConv2dPlugin(SparseConvAttributes const& attributes, int32_t nbInputs) noexcept;
  PassSparseConv2dPlugin(PassSparseConv2dPlugin const&) = default;
  PassSparseConv2dPlugin& operator=(PassSparseConv2dPlugin const&) = delete;
  ~PassSparseConv2dPlugin() override = default;

  // IPluginV3
  nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
  nvinfer1::IPluginV3* clone() noexcept override;

  // IPluginV3OneCore
  char const* getPluginName() const noexcept override;
  char const* getPluginVersion() const noexcept override;
  char const* getPluginNamespace() const noexcept override;

  // IPluginV3OneBuild
  int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                          nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
  int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs, nvinfer1::DataType const* inputTypes,
                             int32_t nbInputs) const noexcept override;
  int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
                          int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
                          nvinfer1::IExprBuilder& exprBuilder) noexcept override;
  bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override;
  int32_t getNbOutputs() const noexcept override;
  // The channel-last path's scratch (cell list, laid-out weight); 0 for convs it cannot run.
  size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                          nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
#if PASSRT_TRT_ALIASED_IO
  // cache_out (output 0) is cache_in: the state is updated in place.
  int32_t getAliasedInput(int32_t outputIndex) noexcept override;
#endif

  // IPluginV3OneRuntime
  int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
                        int32_t nbOutputs) noexcept override;
  int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                  void const* const* inputs, void* const* outputs, void* workspace,
                  cudaStream_t stream) noexcept override;
  nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

 private:
  SparseConvAttributes mAttributes;
  // Whether the optional residual is connected is only visible in the input count, which
  // enqueue() is not given: it is recorded when TensorRT infers shapes, configures the plugin
  // or changes shapes, and serialized.
  int32_t mNbInputs{0};
  // The execution context's error recorder once attached; nullptr in the build phase.
  nvinfer1::IErrorRecorder* mErrorRecorder{nullptr};
  // Storage for getFieldsToSerialize(); rebuilt on every call because the fields point into
  // this object (a copied vector would point into the original).
  std::vector<nvinfer1::PluginField> mSerialFields;
  nvinfer1::PluginFieldCollection mSerialCollection{};
  // The channel-last path's weight, laid out once (not serialized; a clone or attached copy starts empty;
  // freed with the object).
  LaidWeights mLaid;
};

class PassSparseConv2dPluginCreator : public nvinfer1::IPluginCreatorV3One {
 public:
  PassSparseConv2dPluginCreator();
  ~PassSparseConv2dPluginCreator() override = default;

  char const* getPluginName() const noexcept override;
  char const* getPluginVersion() const noexcept override;
  char const* getPluginNamespace() const noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
  nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
                                    nvinfer1::TensorRTPhase phase) noexcept override;

 private:
  AdvertisedFields mFieldNames;
};

}  // namespace passrt::trt
