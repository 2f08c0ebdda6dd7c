// PassSparseConv2d for TensorRT 8.x: the IPluginV2DynamicExt classes (passSparseConv2dPluginV2.h).
// Compiled only against TensorRT 8 headers (CMakeLists.txt, compile_check.sh pick the file by version).
#include "passSparseConv2dPluginV2.h"

#include "passSparseConv2dPluginCommon.h"
#include "pluginInfo.h"

#include <exception>

namespace passrt::trt {

PassSparseConv2dPlugin::PassSparseConv2dPlugin(SparseConvAttributes const& attributes, int32_t nbInputs,
                                               char const* pluginNamespace)
    : mAttributes(attributes),
      mNbInputs(nbInputs),
      mNamespace(pluginNamespace != nullptr ? pluginNamespace : kPluginNamespace) {}

PassSparseConv2dPlugin* PassSparseConv2dPlugin::deserialize(void const* data, size_t length,
                                                            char const* pluginNamespace) {
  SparseConvAttributes attributes;
  int32_t nbInputs{0};
  Message error;
  if (!passrt::trt::deserialize(data, length, attributes, nbInputs, error)) {
    reportError(nullptr, ErrorCode::kINVALID_ARGUMENT, "%s", error.text);
    return nullptr;
  }
  return new PassSparseConv2dPlugin(attributes, nbInputs, pluginNamespace);
}

char const* PassSparseConv2dPlugin::getPluginType() const noexcept { return kPluginName; }

char const* PassSparseConv2dPlugin::getPluginVersion() const noexcept { return kPluginVersion; }

int32_t PassSparseConv2dPlugin::getNbOutputs() const noexcept { return kNbOutputs; }

int32_t PassSparseConv2dPlugin::initialize() noexcept {
  // Nothing to set up yet: the laid-out weight's memory needs the shapes (configurePlugin, enqueue).
  return kSuccess;
}

void PassSparseConv2dPlugin::terminate() noexcept { mLaid.release(); }

size_t PassSparseConv2dPlugin::getSerializationSize() const noexcept { return serialSize(); }

void PassSparseConv2dPlugin::serialize(void* buffer) const noexcept {
  if (buffer == nullptr) {
    return;
  }
  passrt::trt::serialize(mAttributes, mNbInputs, buffer);
}

void PassSparseConv2dPlugin::destroy() noexcept { delete this; }

void PassSparseConv2dPlugin::setPluginNamespace(char const* pluginNamespace) noexcept {
  try {
    mNamespace = pluginNamespace != nullptr ? pluginNamespace : "";
  } catch (std::exception const& e) {
    reportException(e);
  }
}

char const* PassSparseConv2dPlugin::getPluginNamespace() const noexcept { return mNamespace.c_str(); }

nvinfer1::DataType PassSparseConv2dPlugin::getOutputDataType(int32_t index, nvinfer1::DataType const* inputTypes,
                                                             int32_t nbInputs) const noexcept {
  if (index != 0 || inputTypes == nullptr || !checkIoCount(nbInputs, kNbOutputs, nullptr)) {
    return nvinfer1::DataType::kFLOAT;
  }
  return inputTypes[kInX];
}

nvinfer1::IPluginV2DynamicExt* PassSparseConv2dPlugin::clone() const noexcept {
  try {
    return new PassSparseConv2dPlugin(*this);
  } catch (std::exception const& e) {
    reportException(e);
  }
  return nullptr;
}

DimsExprs PassSparseConv2dPlugin::getOutputDimensions(int32_t outputIndex, DimsExprs const* inputs, int32_t nbInputs,
                                                      nvinfer1::IExprBuilder& /* exprBuilder */) noexcept {
  if (outputIndex != 0 || inputs == nullptr || !checkIoCount(nbInputs, kNbOutputs, nullptr) ||
      inputs[kInCache].nbDims != kRank) {
    reportError(nullptr, ErrorCode::kINVALID_ARGUMENT, "cannot infer the output shape (output %d, %d inputs)",
                outputIndex, nbInputs);
    return DimsExprs{};
  }
  // Also recorded here, not only in configurePlugin(): this runs on the network's own plugin object,
  // from which every later clone (and the serialized plugin) descends.
  mNbInputs = nbInputs;
  return inputs[kInCache];
}

bool PassSparseConv2dPlugin::supportsFormatCombination(int32_t pos, PluginTensorDesc const* inOut, int32_t nbInputs,
                                                       int32_t nbOutputs) noexcept {
  if (inOut == nullptr || pos < 0) {
    return false;
  }
  return supportsDesc(mAttributes, pos, inOut, nbInputs, nbOutputs);
}

void PassSparseConv2dPlugin::configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                             DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept {
  // TensorRT 8 gives configurePlugin() no way to fail: problems are reported here, and enqueue()
  // checks the real shapes again and refuses to run.
  if (checkDescs(mAttributes, in, nbInputs, nbOutputs, nullptr) && out != nullptr) {
    mNbInputs = nbInputs;
    // Also called when an execution context is created: the memory for the laid-out weight is made here,
    // not in enqueue(), where a CUDA graph capture may be running.
    PluginTensorDesc descs[kNbInputsWithResidual];
    for (int32_t i = 0; i < nbInputs; ++i) {
      descs[i] = in[i].desc;
    }
    reserveLaidWeights(mAttributes, descs, nbInputs, mLaid);
  }
}

size_t PassSparseConv2dPlugin::getWorkspaceSize(PluginTensorDesc const* inputs, int32_t nbInputs,
                                                PluginTensorDesc const* /* outputs */,
                                                int32_t /* nbOutputs */) const noexcept {
  return workspaceBytes(mAttributes, inputs, nbInputs);
}

int32_t PassSparseConv2dPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
                                        void const* const* inputs, void* const* outputs, void* workspace,
                                        cudaStream_t stream) noexcept {
  return launch(mAttributes, mNbInputs, inputDesc, outputDesc, inputs, outputs, workspace, mLaid, stream, nullptr);
}

PassSparseConv2dPluginCreator::PassSparseConv2dPluginCreator() : mNamespace(kPluginNamespace) {}

char const* PassSparseConv2dPluginCreator::getPluginName() const noexcept { return kPluginName; }

char const* PassSparseConv2dPluginCreator::getPluginVersion() const noexcept { return kPluginVersion; }

nvinfer1::PluginFieldCollection const* PassSparseConv2dPluginCreator::getFieldNames() noexcept {
  return mFieldNames.collection();
}

nvinfer1::IPluginV2* PassSparseConv2dPluginCreator::createPlugin(char const* /* name */,
                                                                 PluginFieldCollection const* fc) noexcept {
  try {
    SparseConvAttributes attributes;
    int32_t nbInputs{0};
    if (!parseFields(fc, attributes, nbInputs)) {
      return nullptr;
    }
    return new PassSparseConv2dPlugin(attributes, nbInputs, mNamespace.c_str());
  } catch (std::exception const& e) {
    reportException(e);
  }
  return nullptr;
}

nvinfer1::IPluginV2* PassSparseConv2dPluginCreator::deserializePlugin(char const* /* name */, void const* serialData,
                                                                      size_t serialLength) noexcept {
  try {
    return PassSparseConv2dPlugin::deserialize(serialData, serialLength, mNamespace.c_str());
  } catch (std::exception const& e) {
    reportException(e);
  }
  return nullptr;
}

void PassSparseConv2dPluginCreator::setPluginNamespace(char const* pluginNamespace) noexcept {
  try {
    mNamespace = pluginNamespace != nullptr ? pluginNamespace : "";
  } catch (std::exception const& e) {
    reportException(e);
  }
}

char const* PassSparseConv2dPluginCreator::getPluginNamespace() const noexcept { return mNamespace.c_str(); }

}  // namespace passrt::trt
