// Identity of passrt's TensorRT plugin: the one place these strings are defined in C++.
//
// TensorRT finds a plugin by (name, version, namespace). The ONNX parser takes them from the
// node's op_type and its plugin_version / plugin_namespace attributes, and a serialized engine
// stores them to look the creator up again at load time, so the ONNX exporter must write exactly
// these strings (tests/plugins/test_tensorrt_plugin.py checks them against the contract).
// Changing the attributes or the serialized layout means a new kPluginVersion: engines built
// with the old one then fail to load with "plugin not found" instead of misreading their data.
#pragma once

namespace passrt::trt {

constexpr char const* kPluginName{"PassSparseConv2d"};
constexpr char const* kPluginVersion{"1"};
constexpr char const* kPluginNamespace{"passrt"};

}  // namespace passrt::trt
