"""The contract between the Python side, the kernels and the TensorRT plugin, spelled once on the
Python side (the kernel header and pluginInfo.h spell it on the C++ side; tests check they agree).

The ONNX contract (ARCHITECTURE.md, decision 4):

A sparse model's graph is a pure function of its inputs: the per-frame state (the input
reference and every layer's output cache) is explicit I/O, so the same graph runs under
ONNX Runtime, TensorRT (with the plugin) and the reference runner, and several streams can
share one engine. Inputs: ``image`` [1, 3, H, W], ``refresh`` [1] (1.0 recomputes
everything: first frame, reset, periodic refresh) and ``state.<key>``; outputs: the model's
``output.<i>``, ``active_fraction`` [1] (executed / dense MACs, this frame) and one
``state_out.<key>`` per state input. The caller feeds ``state_out.<key>`` back as the next
frame's ``state.<key>`` (zeros and refresh = 1 on the first frame).
"""

# The TensorRT plugin's identity (plugins/tensorrt/pluginInfo.h); the ONNX parser finds it by these.
PLUGIN_NAME = "PassSparseConv2d"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "passrt"
DOMAIN = "passrt"

# Attribute names of the node = the plugin creator's field names (tests/export checks both).
ATTRIBUTES = ("kernel_shape", "strides", "dilations", "pads", "group", "tile", "activation",
              "activation_alpha", "post_activation")

# passrt::Activation codes of the kernel API (passrt_kernels.h); tests/test_contract.py checks that the
# header agrees. Every Python consumer (the op wrapper, the exported program, the node reference) reads
# them from here.
ACTIVATION_CODES = {None: 0, "relu": 1, "relu6": 2, "hardswish": 3, "silu": 4, "sigmoid": 5, "leaky_relu": 6}
ACTIVATION_NAMES = {code: name for name, code in ACTIVATION_CODES.items()}

IMAGE = "image"
REFRESH = "refresh"
ACTIVE_FRACTION = "active_fraction"
STATE_IN = "state."
STATE_OUT = "state_out."
OUTPUT = "output."

# onnx model.metadata_props keys
META_MODEL = "passrt.model"
META_INPUT_SIZE = "passrt.input_size"
META_POLICY = "passrt.policy"
META_FORMAT = "passrt.format"  # "dense" or "sparse"
