// PassSparseConv2d: passrt's sparse convolution as a TensorRT plugin (README.md next to this file).
//
// One source serves two plugin generations, chosen by the TensorRT headers it is compiled against:
//   TensorRT >= 10 (JetPack 6.1+, x86 containers): IPluginV3 with the V3One core/build/runtime
//     capabilities and an IPluginCreatorV3One, the interface TensorRT 10 is built around
//     (IPluginV2DynamicExt still works there but is deprecated);
//   TensorRT 8.x (JetPack 4.6: 8.0/8.2, JetPack 5: 8.4/8.5, JetPack 6.0: 8.6): IPluginV2DynamicExt
//     and IPluginCreator, the newest interface those releases have.
// The classes keep the same names in both, and everything that does not depend on the interface
// (attribute parsing, shape checks, the launch) is shared in the .cpp, so the two differ only in
// how TensorRT calls into them.
//
// The plugin is an adapter: the computation is passrt::sparseConv2d (passrt/csrc/kernels).
#pragma once

#include "NvInferRuntime.h"

#include <cstdint>
#include <string>
#include <vector>

namespace passrt
{
namespace trt
{

//! The ONNX node's attributes, with ONNX Conv's defaults where the contract has one. Plain data:
//! the attribute table in the .cpp addresses the members by offset to parse, serialize and
//! advertise them from one list.
struct SparseConvAttributes
{
    int32_t kernelShape[2]{0, 0};  //!< kh, kw; required (and checked against the weight's shape).
    int32_t strides[2]{1, 1};
    int32_t dilations[2]{1, 1};
    int32_t pads[4]{0, 0, 0, 0};   //!< top, left, bottom, right (ONNX order).
    int32_t group{1};
    int32_t tile{0};               //!< Output cells per tile side; required.
    int32_t activation{0};         //!< passrt::Activation, before the residual add.
    float activationAlpha{0.01F};  //!< LeakyReLU slope.
    int32_t postActivation{0};     //!< passrt::Activation, after the residual add.
};

#if NV_TENSORRT_MAJOR >= 10

//! TensorRT 10 plugin. One object implements all three capabilities, as TensorRT's own V3 plugins
//! do: the state is the attributes plus the number of inputs, so there is nothing to split.
class PassSparseConv2dPlugin : public nvinfer1::IPluginV3,
                               public nvinfer1::IPluginV3OneCore,
                               public nvinfer1::IPluginV3OneBuild,
                               public nvinfer1::IPluginV3OneRuntime
{
public:
    //! nbInputs is 5 or 6 when known (6: with residual), 0 until TensorRT tells the plugin.
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
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    SparseConvAttributes mAttributes;
    //! Whether the optional residual is connected is only visible in the input count, which
    //! enqueue() is not given: it is recorded when TensorRT infers shapes, configures the plugin
    //! or changes shapes, and serialized.
    int32_t mNbInputs{0};
    //! The execution context's error recorder once attached; nullptr in the build phase.
    nvinfer1::IErrorRecorder* mErrorRecorder{nullptr};
    //! Storage for getFieldsToSerialize(); rebuilt on every call because the fields point into
    //! this object (a copied vector would point into the original).
    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialCollection{};
};

class PassSparseConv2dPluginCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    PassSparseConv2dPluginCreator();
    ~PassSparseConv2dPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

#else // TensorRT 8.x

//! TensorRT 8 plugin.
class PassSparseConv2dPlugin : public nvinfer1::IPluginV2DynamicExt
{
public:
    //! nbInputs is 5 or 6 when known (6: with residual), 0 until TensorRT tells the plugin.
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
    nvinfer1::DataType getOutputDataType(
        int32_t index, nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;

    // IPluginV2DynamicExt
    nvinfer1::IPluginV2DynamicExt* clone() const noexcept override;
    nvinfer1::DimsExprs getOutputDimensions(int32_t outputIndex, nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(
        int32_t pos, nvinfer1::PluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept override;
    void configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::PluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;

    //! Rebuilds a plugin from serialize()'s bytes; nullptr (with the error reported) if they are not ours.
    static PassSparseConv2dPlugin* deserialize(void const* data, size_t length, char const* pluginNamespace);

private:
    SparseConvAttributes mAttributes;
    //! Whether the optional residual is connected is only visible in the input count, which
    //! enqueue() is not given, and TensorRT 8 does not reconfigure a deserialized plugin whose
    //! shapes do not change: the count is recorded when TensorRT infers shapes or configures the
    //! plugin, and serialized.
    int32_t mNbInputs{0};
    std::string mNamespace;
};

class PassSparseConv2dPluginCreator : public nvinfer1::IPluginCreator
{
public:
    PassSparseConv2dPluginCreator();
    ~PassSparseConv2dPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV2* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc) noexcept override;
    nvinfer1::IPluginV2* deserializePlugin(
        char const* name, void const* serialData, size_t serialLength) noexcept override;
    void setPluginNamespace(char const* pluginNamespace) noexcept override;
    char const* getPluginNamespace() const noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
    std::string mNamespace;
};

#endif // NV_TENSORRT_MAJOR >= 10

} // namespace trt
} // namespace passrt
