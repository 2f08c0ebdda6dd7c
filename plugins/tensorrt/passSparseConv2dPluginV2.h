// PassSparseConv2d for TensorRT 8.x (JetPack 4.6: 8.0/8.2, JetPack 5: 8.4/8.5, JetPack 6.0: 8.6):
// IPluginV2DynamicExt and IPluginCreator, the newest interface those releases have. Include
// passSparseConv2dPlugin.h, which picks this header or passSparseConv2dPluginV3.h by the TensorRT version.
#pragma once

#include "passSparseConv2dPluginCommon.h"

#include "NvInferRuntime.h"

#include <cstdint>
#include <string>
#include <vector>

#if NV_TENSORRT_MAJOR >= 10
#error "passSparseConv2dPluginV2.h is for TensorRT 8 headers; TensorRT >= 10 uses passSparseConv2dPluginV3.h"
#endif

namespace passrt::trt {

// TensorRT 8 plugin.
class PassSparseConv2dPlugin : public nvinfer1::IPluginV2DynamicExt {
 public:
  // nbInputs is 5 or 6 when known (6: with residual), 0 until TensorRT tells the plugin.
  PassSparseConv2dPlugin(SparseConvAttributes const& attributes, int32_t nbInputs, char const* pluginNamespace);
  PassSparseConv2dPlugin(PassSparseConv2dPlugin const&) = default;
  PassSparseConv2dPlugin& operator=(PassSparseConv2dPlugin const&) = delete;
  ~PassSparseConv2dPlugin() override = default;

  // IPluginV2
  char const* getPluginType() const noexcept override;
  char const* getPluginVersion() const noexcept override;
  int32_t getNbOutputs() const noexcept override;
  int32_t initialize() noexcept override;
  void terminate() noexcept override;
  size_t getSerializationSize() const noexcept override;
  void serialize(void* buffer) const noexcept override;
  void destroy() noexcept override;
  void setPluginNamespace(char const* pluginNamespace) noexcept override;
  char const* getPluginNamespace() const noexcept override;

  // IPluginV2Ext
  nvinfer1::DataType getOutputDataType(int32_t index, nvinfer1::DataType const* inputTypes,
                                       int32_t nbInputs) const noexcept override;

  // IPluginV2DynamicExt
  nvinfer1::IPluginV2DynamicExt* clone() const noexcept override;
  nvinfer1::DimsExprs getOutputDimensions(int32_t outputIndex, nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
                                          nvinfer1::IExprBuilder& exprBuilder) noexcept override;
  bool supportsFormatCombination(int32_t pos, nvinfer1::PluginTensorDesc const* inOut, int32_t nbInputs,
                                 int32_t nbOutputs) noexcept override;
  void configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
                       nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
  size_t getWorkspaceSize(nvinfer1::PluginTensorDesc const* inputs, int32_t nbInputs,
                          nvinfer1::PluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
  int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
                  void const* const* inputs, void* const* outputs, void* workspace,
                  cudaStream_t stream) noexcept override;

  // Rebuilds a plugin from serialize()'s bytes; nullptr (with the error reported) if they are not ours.
  static PassSparseConv2dPlugin* deserialize(void const* data, size_t length, char const* pluginNamespace);

 private:
  SparseConvAttributes mAttributes;
  // Whether the optional residual is connected is only visible in the input count, which
  // enqueue() is not given, and TensorRT 8 does not reconfigure a deserialized plugin whose
  // shapes do not change: the count is recorded when TensorRT infers shapes or configures the
  // plugin, and serialized.
  int32_t mNbInputs{0};
  std::string mNamespace;
  // The channel-last path's weight, laid out once (not serialized; a clone starts empty; freed in terminate()).
  LaidWeights mLaid;
};

class PassSparseConv2dPluginCreator : public nvinfer1::IPluginCreator {
 public:
  PassSparseConv2dPluginCreator();
  ~PassSparseConv2dPluginCreator() override = default;

  char const* getPluginName() const noexcept override;
  char const* getPluginVersion() const noexcept override;
  nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
  nvinfer1::IPluginV2* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc) noexcept override;
  nvinfer1::IPluginV2* deserializePlugin(char const* name, void const* serialData,
                                         size_t serialLength) noexcept override;
  void setPluginNamespace(char const* pluginNamespace) noexcept override;
  char const* getPluginNamespace() const noexcept override;

 private:
  AdvertisedFields mFieldNames;
  std::string mNamespace;
};

}  // namespace passrt::trt
