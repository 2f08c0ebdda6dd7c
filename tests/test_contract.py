"""The contract is spelled once per language: passrt/contract.py on the Python side, the kernel
header (enum Activation) and plugins/tensorrt/pluginInfo.h on the C++ side. This parses the C++
and checks that both spellings agree, so neither can drift without failing here (no compiler
needed). The plugin creator's attribute table is checked against contract.ATTRIBUTES in
tests/plugins/test_tensorrt_plugin.py (test_plugin_attributes_match_onnx_contract).
"""

import re
from pathlib import Path

from passrt import contract

ROOT = Path(__file__).resolve().parents[1]
KERNEL_HEADER = ROOT / "passrt" / "csrc" / "kernels" / "passrt_kernels.h"
PLUGIN_INFO = ROOT / "plugins" / "tensorrt" / "pluginInfo.h"

# enum Activation's enumerators -> the contract's activation names (None: no activation).
CPP_NAMES = {"kNone": None, "kRelu": "relu", "kRelu6": "relu6", "kHardSwish": "hardswish", "kSilu": "silu",
             "kSigmoid": "sigmoid", "kLeakyRelu": "leaky_relu"}


def header_activations():
    body = re.search(r"enum class Activation\s*:\s*int32_t\s*\{(.*?)\};", KERNEL_HEADER.read_text(), re.S)
    assert body, f"enum class Activation not found in {KERNEL_HEADER}"
    code = re.sub(r"//[^\n]*", "", body.group(1))
    found = dict((name, int(value)) for name, value in re.findall(r"(k\w+)\s*=\s*(\d+)", code))
    leftovers = re.sub(r"k\w+\s*=\s*\d+\s*,?", "", code).strip()
    assert not leftovers, f"enumerators without an explicit value: {leftovers!r}"
    return found


def test_activation_codes_agree_with_the_kernel_header():
    found = header_activations()
    assert set(found) == set(CPP_NAMES), f"enum Activation has {sorted(found)}; update CPP_NAMES and the contract"
    assert {CPP_NAMES[name]: code for name, code in found.items()} == contract.ACTIVATION_CODES
    assert contract.ACTIVATION_NAMES == {code: name for name, code in contract.ACTIVATION_CODES.items()}


def test_plugin_identity_agrees_with_plugin_info():
    found = dict(re.findall(r'constexpr char const\* (kPlugin\w+)\{"([^"]*)"\};', PLUGIN_INFO.read_text()))
    assert found == {"kPluginName": contract.PLUGIN_NAME, "kPluginVersion": contract.PLUGIN_VERSION,
                     "kPluginNamespace": contract.PLUGIN_NAMESPACE}
