// PassSparseConv2d for TensorRT >= 10: the IPluginV3 classes (passSparseConv2dPluginV3.h). Compiled
// only against TensorRT 10 headers (CMakeLists.txt, compile_check.sh pick the file by version).
#include "passSparseConv2dPluginV3.h"

#include "passSparseConv2dPluginCommon.h"
#include "pluginInfo.h"

#include <exception>

namespace passrt::trt {

PassSparseConv2dPlugin::PassSparseConv2dPlugin(SparseConvAttributes const& attributes, int32_t nbInputs) noexcept
    : mAttributes(attributes), mNbInputs(nbInputs) {}

nvinfer1::IPluginCapability* PassSparseConv2dPlugin::getCapabilityInterface(
    nvinfer1::PluginCapabilityType type) noexcept {
  switch (type) {
    case nvinfer1::PluginCapabilityType::kCORE:
      return static_cast<nvinfer1::IPluginV3OneCore*>(this);
    case nvinfer1::PluginCapabilityType::kBUILD:
      return static_cast<PluginBuildCapability*>(this);
    case nvinfer1::PluginCapabilityType::kRUNTIME:
      return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
  }
  return nullptr;
}

nvinfer1::IPluginV3* PassSparseConv2dPlugin::clone() noexcept {
  try {
    return new PassSparseConv2dPlugin(*this);
  } catch (std::exception const& e) {
    reportException(e);
  }
  return nullptr;
}

char const* PassSparseConv2dPlugin::getPluginName() const noexcept { return kPluginName; }

char const* PassSparseConv2dPlugin::getPluginVersion() const noexcept { return kPluginVersion; }

char const* PassSparseConv2dPlugin::getPluginNamespace() const noexcept { return kPluginNamespace; }

int32_t PassSparseConv2dPlugin::configurePlugin(DynamicPluginTensorDesc const* in, int32_t nbInputs,
                                                DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept {
  if (!checkDescs(mAttributes, in, nbInputs, nbOutputs, mErrorRecorder) || out == nullptr) {
    return kFailure;
  }
  mNbInputs = nbInputs;
  return kSuccess;
}

int32_t PassSparseConv2dPlugin::getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
                                                   nvinfer1::DataType const* inputTypes,
                                                   int32_t nbInputs) const noexcept {
  if (!checkIoCount(nbInputs, nbOutputs, mErrorRecorder) || outputTypes == nullptr || inputTypes == nullptr) {
    return kFailure;
  }
  outputTypes[0] = inputTypes[kInX];
  return kSuccess;
}

int32_t PassSparseConv2dPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
                                                DimsExprs const* /* shapeInputs */, int32_t /* nbShapeInputs */,
                                                DimsExprs* outputs, int32_t nbOutputs,
                                                nvinfer1::IExprBuilder& /* exprBuilder */) noexcept {
  if (!checkIoCount(nbInputs, nbOutputs, mErrorRecorder) || inputs == nullptr || outputs == nullptr) {
    return kFailure;
  }
  if (inputs[kInCache].nbDims != kRank) {
    reportError(mErrorRecorder, ErrorCode::kINVALID_ARGUMENT, "cache_in must have rank 4");
    return kFailure;
  }
  // Also recorded here, not only in configurePlugin(): this runs on the network's own plugin object,
  // from which every later clone (and the serialized plugin) descends.
  mNbInputs = nbInputs;
  outputs[0] = inputs[kInCache];
  return kSuccess;
}

bool PassSparseConv2dPlugin::supportsFormatCombination(int32_t pos, DynamicPluginTensorDesc const* inOut,
                                                       int32_t nbInputs, int32_t nbOutputs) noexcept {
  if (inOut == nullptr || pos < 0) {
    return false;
  }
  if (pos >= nbInputs + nbOutputs || !isValidIoCount(nbInputs, nbOutputs)) {
    return false;
  }
  PluginTensorDesc descs[kNbInputsWithResidual + kNbOutputs];
  for (int32_t i = 0; i < nbInputs + nbOutputs; ++i) {
    descs[i] = inOut[i].desc;
  }
  return supportsDesc(mAttributes, pos, descs, nbInputs, nbOutputs);
}

int32_t PassSparseConv2dPlugin::getNbOutputs() const noexcept { return kNbOutputs; }

size_t PassSparseConv2dPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
                                                DynamicPluginTensorDesc const* /* outputs */,
                                                int32_t /* nbOutputs */) const noexcept {
  if (inputs == nullptr || nbInputs < kNbInputsPlain || nbInputs > kNbInputsWithResidual) {
    return 0;
  }
  PluginTensorDesc descs[kNbInputsWithResidual];
  for (int32_t i = 0; i < nbInputs; ++i) {
    descs[i] = inputs[i].desc;
    descs[i].dims = inputs[i].max;  // the largest shape the engine runs (passrt's engines have one)
  }
  return workspaceBytes(mAttributes, descs, nbInputs);
}

#if PASSRT_TRT_ALIASED_IO
int32_t PassSparseConv2dPlugin::getAliasedInput(int32_t outputIndex) noexcept {
  return outputIndex == 0 ? kInCache : -1;
}
#endif

int32_t PassSparseConv2dPlugin::onShapeChange(PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out,
                                              int32_t nbOutputs) noexcept {
  if (!checkIoCount(nbInputs, nbOutputs, mErrorRecorder) || out == nullptr ||
      !checkRuntimeDescs(mAttributes, in, nbInputs, mErrorRecorder)) {
    return kFailure;
  }
  mNbInputs = nbInputs;
  reserveLaidWeights(mAttributes, in, nbInputs, mLaid);  // outside enqueue(), where a graph capture may run
  return kSuccess;
}

int32_t PassSparseConv2dPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
                                        void const* const* inputs, void* const* outputs, void* workspace,
                                        cudaStream_t stream) noexcept {
  return launch(mAttributes, mNbInputs, inputDesc, outputDesc, inputs, outputs, workspace, mLaid, stream,
                mErrorRecorder);
}

nvinfer1::IPluginV3* PassSparseConv2dPlugin::attachToContext(nvinfer1::IPluginResourceContext* context) noexcept {
  try {
    auto* plugin = new PassSparseConv2dPlugin(*this);
    plugin->mErrorRecorder = context != nullptr ? context->getErrorRecorder() : nullptr;
    return plugin;
  } catch (std::exception const& e) {
    reportException(e);
  }
  return nullptr;
}

nvinfer1::PluginFieldCollection const* PassSparseConv2dPlugin::getFieldsToSerialize() noexcept {
  try {
    mSerialFields.clear();
    SparseConvAttributes const& attributes = mAttributes;
    for (AttributeSpec const& spec : kAttributes) {
      mSerialFields.emplace_back(spec.name, attributeStorage(attributes, spec), pluginFieldType(spec.type),
                                 spec.length);
    }
    mSerialFields.emplace_back(kNbInputsField, &mNbInputs, PluginFieldType::kINT32, 1);
    mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
    mSerialCollection.fields = mSerialFields.data();
    return &mSerialCollection;
  } catch (std::exception const& e) {
    reportException(e);
  }
  return nullptr;
}

PassSparseConv2dPluginCreator::PassSparseConv2dPluginCreator() = default;

char const* PassSparseConv2dPluginCreator::getPluginName() const noexcept { return kPluginName; }

char const* PassSparseConv2dPluginCreator::getPluginVersion() const noexcept { return kPluginVersion; }

char const* PassSparseConv2dPluginCreator::getPluginNamespace() const noexcept { return kPluginNamespace; }

nvinfer1::PluginFieldCollection const* PassSparseConv2dPluginCreator::getFieldNames() noexcept {
  return mFieldNames.collection();
}

nvinfer1::IPluginV3* PassSparseConv2dPluginCreator::createPlugin(char const* /* name */,
                                                                 PluginFieldCollection const* fc,
                                                                 nvinfer1::TensorRTPhase /* phase */) noexcept {
  // Both phases parse the same way: the build phase gets the ONNX attributes, the runtime phase
  // getFieldsToSerialize()'s fields, which add the input count.
  try {
    SparseConvAttributes attributes;
    int32_t nbInputs{0};
    if (!parseFields(fc, attributes, nbInputs)) {
      return nullptr;
    }
    return new PassSparseConv2dPlugin(attributes, nbInputs);
  } catch (std::exception const& e) {
    reportException(e);
  }
  return nullptr;
}

}  // namespace passrt::trt
