"""The TensorRT plugin in plugins/tensorrt/ (PassSparseConv2d).

What can run where:
- The ONNX contract (attribute names, types and lengths; op_type, version, namespace) is
  checked against the plugin's C++ source everywhere: no compiler needed.
- With TensorRT's public headers (PASSRT_TRT_HEADERS, a directory holding ``8.2.1/`` and/or
  ``10.3.0/``; see plugins/tensorrt/README.md for how to extract them from NVIDIA/TensorRT),
  a C++ compiler and the CUDA headers: ``compile_check.sh`` for each TensorRT generation, and
  a host-only smoke test that links the plugin against stand-ins for libnvinfer, libcudart and
  the kernel and drives it as TensorRT would (no TensorRT library, no GPU).
- With TensorRT's Python package, a GPU and the built libpassrt_trt.so: a real engine from an
  ONNX PassSparseConv2d node, compared over two frames with passrt's PyTorch reference.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from passrt import contract
from passrt.kernels import sparse_conv2d
from passrt.kernels.tables import tile_grid
from tests.conftest import skip_or_fail

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "plugins" / "tensorrt"
KERNEL_DIR = ROOT / "passrt" / "csrc" / "kernels"

# The ONNX node the plugin implements, as the exporter writes it (passrt/export/contract.py):
# attribute name -> (PluginField type, number of values), in this order.
CONTRACT_OP = {"op_type": contract.PLUGIN_NAME, "plugin_version": contract.PLUGIN_VERSION,
               "plugin_namespace": contract.PLUGIN_NAMESPACE}
CONTRACT_ATTRIBUTES = [
    ("kernel_shape", "INT32", 2),
    ("strides", "INT32", 2),
    ("dilations", "INT32", 2),
    ("pads", "INT32", 4),
    ("group", "INT32", 1),
    ("tile", "INT32", 1),
    ("activation", "INT32", 1),
    ("activation_alpha", "FLOAT32", 1),
    ("post_activation", "INT32", 1),
]
HEADER_VERSIONS = ["8.2.1", "10.3.0"]


# --------------------------------------------------------------------------------------------
# The ONNX contract against the source.

def _attribute_table():
    """Rows of kATTRIBUTES in passSparseConv2dPlugin.cpp: (name, type, length, member)."""
    text = (PLUGIN_DIR / "passSparseConv2dPlugin.cpp").read_text()
    table = re.search(r"constexpr AttributeSpec kATTRIBUTES\[\] = \{(.*?)\n\};", text, re.S)
    assert table, "kATTRIBUTES not found in passSparseConv2dPlugin.cpp"
    row = re.compile(r'\{"(\w+)",\s*PluginFieldType::k(\w+),\s*(\d+),\s*offsetof\(SparseConvAttributes,\s*(\w+)\)\}')
    rows = [(m[0], m[1], int(m[2]), m[3]) for m in row.findall(table.group(1))]
    # Every non-empty line of the table must be a row the pattern understood.
    lines = [ln for ln in table.group(1).splitlines() if ln.strip()]
    assert len(rows) == len(lines), f"unparsed rows in kATTRIBUTES: {lines}"
    return text, rows


def _struct_members():
    """Members of SparseConvAttributes in passSparseConv2dPlugin.h: name -> (C++ type, count)."""
    text = (PLUGIN_DIR / "passSparseConv2dPlugin.h").read_text()
    body = re.search(r"struct SparseConvAttributes\s*\{(.*?)\n\};", text, re.S)
    assert body, "struct SparseConvAttributes not found"
    members = {}
    for ctype, name, count in re.findall(r"^\s*(int32_t|float)\s+(\w+)(?:\[(\d+)\])?\s*\{", body.group(1), re.M):
        members[name] = (ctype, int(count or 1))
    return members


def test_plugin_attributes_match_onnx_contract():
    assert [a[0] for a in CONTRACT_ATTRIBUTES] == list(contract.ATTRIBUTES)  # what the exporter writes
    text, rows = _attribute_table()
    assert [(n, t, k) for n, t, k, _ in rows] == CONTRACT_ATTRIBUTES

    # Each row stores into a member of the right C++ type and size, and no member is left out.
    members = _struct_members()
    used = [m for *_, m in rows]
    assert sorted(used) == sorted(members), (used, members)
    for name, ftype, length, member in rows:
        ctype, count = members[member]
        assert (ctype, count) == ({"INT32": "int32_t", "FLOAT32": "float"}[ftype], length), name

    # The creators advertise exactly this table (the ONNX parser passes only advertised attributes).
    assert "advertisedFields()" in text and "for (AttributeSpec const& spec : kATTRIBUTES)" in text


def test_plugin_identity_matches_onnx_contract():
    text = (PLUGIN_DIR / "pluginInfo.h").read_text()
    found = dict(re.findall(r'constexpr char const\* (kPLUGIN_\w+)\{"([^"]*)"\};', text))
    assert found == {"kPLUGIN_NAME": CONTRACT_OP["op_type"], "kPLUGIN_VERSION": CONTRACT_OP["plugin_version"],
                     "kPLUGIN_NAMESPACE": CONTRACT_OP["plugin_namespace"]}
    # Defined in one place: the plugin's code uses the constants, never the literals (comments may).
    for source in ("passSparseConv2dPlugin.cpp", "passSparseConv2dPlugin.h"):
        code = re.sub(r"//[^\n]*", "", (PLUGIN_DIR / source).read_text())
        for value in found.values():
            assert f'"{value}"' not in code, f'{source} spells out "{value}"'


# --------------------------------------------------------------------------------------------
# Compile checks against TensorRT's public headers.

def _headers(version):
    root = os.environ.get("PASSRT_TRT_HEADERS")
    if not root:
        skip_or_fail(f"PASSRT_TRT_HEADERS is not set: no TensorRT {version} headers to compile against "
                    "(plugins/tensorrt/README.md, 'What was checked', shows how to get them)")
    path = Path(root) / version
    if not path.is_dir():
        skip_or_fail(f"no TensorRT {version} headers in {path}")
    return path


def _include_dir(path):
    return path / "include" if (path / "include" / "NvInfer.h").exists() else path


def _cuda_include():
    candidates = [os.environ.get("CUDA_HOME", "") + "/include", "/usr/local/cuda/include"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        candidates.insert(0, str(Path(nvcc).resolve().parents[1] / "include"))
    for c in candidates:
        if Path(c, "cuda_runtime_api.h").exists():
            return c
    skip_or_fail("no CUDA headers (cuda_runtime_api.h): set CUDA_HOME")


@pytest.mark.parametrize("version", HEADER_VERSIONS)
def test_compile_check(version):
    headers = _headers(version)
    out = subprocess.run(["bash", str(PLUGIN_DIR / "compile_check.sh"), str(headers)], capture_output=True, text=True)
    if out.returncode == 2:
        skip_or_fail(out.stderr.strip())
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"OK (TensorRT {version})" in out.stdout


# Host-only smoke test. The plugin's calls out of its own code are few (TensorRT's getLogger and
# getPluginRegistry, cudaMemcpyAsync, cudaGetErrorString, passrt::sparseConv2d), so stand-ins
# record them and this program plays TensorRT: create from ONNX-style fields, query formats,
# configure with good and bad shapes, enqueue, serialize and restore.
HOST_SMOKE_CPP = r"""
#include "passSparseConv2dPlugin.h"
#include "passrt_kernels.h"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

using namespace nvinfer1;
using passrt::trt::PassSparseConv2dPlugin;
using passrt::trt::PassSparseConv2dPluginCreator;

namespace
{
int gFailures = 0;
std::vector<std::string> gLog;

void check(bool ok, int line, char const* what)
{
    if (!ok)
    {
        std::printf("FAIL line %d: %s\n", line, what);
        ++gFailures;
    }
}
#define CHECK(cond) check((cond), __LINE__, #cond)

bool logged(char const* needle)
{
    for (auto const& line : gLog)
    {
        if (line.find(needle) != std::string::npos)
        {
            return true;
        }
    }
    return false;
}

class CapturingLogger : public ILogger
{
public:
    void log(Severity, AsciiChar const* msg) noexcept override
    {
        gLog.push_back(msg);
    }
} gLogger;

struct Launch
{
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

struct Copy
{
    int calls = 0;
    size_t bytes = 0;
    void* dst = nullptr;
    void const* src = nullptr;
} gCopy;
} // namespace

// Stand-ins for libnvinfer, libcudart and the kernels.
extern "C" nvinfer1::IPluginRegistry* getPluginRegistry() noexcept
{
    return nullptr; // No registry: errors go to the logger below.
}
extern "C" nvinfer1::ILogger* getLogger() noexcept
{
    return &gLogger;
}
extern "C" cudaError_t cudaMemcpyAsync(void* dst, void const* src, size_t count, cudaMemcpyKind, cudaStream_t)
{
    ++gCopy.calls;
    gCopy.bytes = count;
    gCopy.dst = dst;
    gCopy.src = src;
    return cudaSuccess;
}
extern "C" char const* cudaGetErrorString(cudaError_t)
{
    return "stub error";
}
namespace passrt
{
cudaError_t sparseConv2d(SparseConvParams const& p, DataType dtype, void const* input, void const* weight,
    void const* bias, void const* residual, float const* tile_mask, void* output, cudaStream_t)
{
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
} // namespace passrt

namespace
{
// Geometry: x [1,4,10,10], 3x3 kernel, stride 2, pads (top, left, bottom, right) 1,0,1,2, group 2,
// so weight [8,2,3,3] and output 5x5 ((10+1+1-3)/2+1 = 5, (10+0+2-3)/2+1 = 5); tile 2: 3x3 tiles.
struct Fields
{
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

    PluginFieldCollection const* make(char const* skip = nullptr, bool alphaAsInt = false)
    {
        list.clear();
        auto add = [&](char const* name, void const* data, PluginFieldType type, int32_t n) {
            if (skip == nullptr || std::strcmp(skip, name) != 0)
            {
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

Dims dims(int32_t rank, int64_t a, int64_t b = 0, int64_t c = 0, int64_t d = 0)
{
    Dims r{};
    r.nbDims = rank;
    int64_t const v[4] = {a, b, c, d};
    for (int32_t i = 0; i < rank; ++i)
    {
        r.d[i] = v[i]; // int32 in TensorRT 8, int64 in 10
    }
    return r;
}

//! Descriptors of the inputs then the output; cacheW != 5 makes cache_in (and the output) inconsistent.
std::vector<PluginTensorDesc> descs(DataType type, int32_t nbInputs, int64_t cacheW = 5)
{
    Dims const shapes[6] = {dims(4, 1, 4, 10, 10), dims(4, 1, 1, 3, 3), dims(4, 1, 8, 5, cacheW),
        dims(4, 8, 2, 3, 3), dims(1, 8), dims(4, 1, 8, 5, cacheW)};
    std::vector<PluginTensorDesc> d(static_cast<size_t>(nbInputs) + 1);
    for (int32_t i = 0; i <= nbInputs; ++i)
    {
        d[i].dims = i == nbInputs ? shapes[2] : shapes[i];
        d[i].type = i == 1 ? DataType::kFLOAT : type;
        d[i].format = TensorFormat::kLINEAR;
        d[i].scale = -1.0F;
    }
    return d;
}

std::vector<DynamicPluginTensorDesc> dynamic(std::vector<PluginTensorDesc> const& d)
{
    std::vector<DynamicPluginTensorDesc> r(d.size());
    for (size_t i = 0; i < d.size(); ++i)
    {
        r[i].desc = d[i];
        r[i].min = d[i].dims;
        r[i].max = d[i].dims;
    }
    return r;
}

float gMask[9];
char gX[1], gW[1], gB[1], gCache[1], gRes[1], gOut[1];

int32_t runEnqueue(PassSparseConv2dPlugin& plugin, DataType type, int32_t nbInputs, bool aliasCache = false,
    int64_t cacheW = 5)
{
    auto d = descs(type, nbInputs, cacheW);
    void const* inputs[6] = {gX, gMask, gCache, gW, gB, gRes};
    void* outputs[1] = {aliasCache ? static_cast<void*>(gCache) : static_cast<void*>(gOut)};
    gLaunch = Launch{};
    gCopy = Copy{};
    return plugin.enqueue(d.data(), d.data() + nbInputs, inputs, outputs, nullptr, nullptr);
}

#if NV_TENSORRT_MAJOR >= 10
PassSparseConv2dPlugin* create(PassSparseConv2dPluginCreator& creator, PluginFieldCollection const* fc)
{
    return static_cast<PassSparseConv2dPlugin*>(creator.createPlugin("layer", fc, TensorRTPhase::kBUILD));
}
void release(IPluginV3* p)
{
    delete p;
}
//! 0 if configurePlugin() accepted the shapes without reporting anything.
int32_t configure(PassSparseConv2dPlugin& plugin, std::vector<PluginTensorDesc> const& d, int32_t nbInputs)
{
    auto dd = dynamic(d);
    gLog.clear();
    int32_t const status = plugin.configurePlugin(dd.data(), nbInputs, dd.data() + nbInputs, 1);
    return status != 0 ? status : (gLog.empty() ? 0 : -2);
}
bool supports(PassSparseConv2dPlugin& plugin, std::vector<PluginTensorDesc> const& d, int32_t pos, int32_t nbInputs)
{
    auto dd = dynamic(d);
    return plugin.supportsFormatCombination(pos, dd.data(), nbInputs, 1);
}
#else
PassSparseConv2dPlugin* create(PassSparseConv2dPluginCreator& creator, PluginFieldCollection const* fc)
{
    return static_cast<PassSparseConv2dPlugin*>(creator.createPlugin("layer", fc));
}
void release(IPluginV2* p)
{
    if (p != nullptr)
    {
        p->destroy();
    }
}
//! 0 if configurePlugin() did not report anything (it cannot fail in TensorRT 8).
int32_t configure(PassSparseConv2dPlugin& plugin, std::vector<PluginTensorDesc> const& d, int32_t nbInputs)
{
    auto dd = dynamic(d);
    gLog.clear();
    plugin.configurePlugin(dd.data(), nbInputs, dd.data() + nbInputs, 1);
    return gLog.empty() ? 0 : -1;
}
bool supports(PassSparseConv2dPlugin& plugin, std::vector<PluginTensorDesc> const& d, int32_t pos, int32_t nbInputs)
{
    return plugin.supportsFormatCombination(pos, d.data(), nbInputs, 1);
}
#endif
} // namespace

int main()
{
    PassSparseConv2dPluginCreator creator;
    CHECK(std::strcmp(creator.getPluginName(), "PassSparseConv2d") == 0);
    CHECK(std::strcmp(creator.getPluginVersion(), "1") == 0);
    CHECK(std::strcmp(creator.getPluginNamespace(), "passrt") == 0);

    // The advertised fields: the ONNX attributes, in order, with their types and lengths.
    char const* names[] = {"kernel_shape", "strides", "dilations", "pads", "group", "tile", "activation",
        "activation_alpha", "post_activation"};
    int32_t const lengths[] = {2, 2, 2, 4, 1, 1, 1, 1, 1};
    PluginFieldCollection const* advertised = creator.getFieldNames();
    CHECK(advertised != nullptr && advertised->nbFields == 9);
    for (int32_t i = 0; advertised != nullptr && i < advertised->nbFields && i < 9; ++i)
    {
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
    if (plugin == nullptr)
    {
        return 1;
    }
    CHECK(std::strcmp(plugin->getPluginNamespace(), "passrt") == 0);
    CHECK(plugin->getNbOutputs() == 1);

    // Formats: fp32 or fp16 x, everything else in x's type except the fp32 mask; linear only.
    for (int32_t nbInputs : {5, 6})
    {
        for (DataType t : {DataType::kFLOAT, DataType::kHALF})
        {
            auto d = descs(t, nbInputs);
            for (int32_t pos = 0; pos <= nbInputs; ++pos)
            {
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
    for (auto& d : wild)
    {
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
    badWeight[3].dims.d[1] = 4; // 4 x group 2 != C_in 4
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
    auto* restored
        = static_cast<PassSparseConv2dPlugin*>(creator.createPlugin("layer", serial, TensorRTPhase::kRUNTIME));
    CHECK(restored != nullptr);
    auto* attached
        = restored != nullptr ? static_cast<PassSparseConv2dPlugin*>(restored->attachToContext(nullptr)) : nullptr;
    CHECK(attached != nullptr && runEnqueue(*attached, DataType::kFLOAT, 6) == 0);
    CHECK(gLaunch.calls == 1 && gLaunch.residual == gRes && gLaunch.p.pad_top == 1 && gLaunch.p.act_alpha == 0.2F);
    auto* cloned = static_cast<PassSparseConv2dPlugin*>(plugin->clone());
    CHECK(cloned != nullptr && runEnqueue(*cloned, DataType::kFLOAT, 6) == 0);
    CHECK(plugin->getCapabilityInterface(PluginCapabilityType::kCORE) != nullptr);
    CHECK(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD) != nullptr);
    CHECK(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME) != nullptr);
    DataType outType{};
    DataType const inTypes[6] = {DataType::kHALF, DataType::kFLOAT, DataType::kHALF, DataType::kHALF,
        DataType::kHALF, DataType::kHALF};
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
    if (restored != nullptr)
    {
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
    DataType const inTypes[6] = {DataType::kHALF, DataType::kFLOAT, DataType::kHALF, DataType::kHALF,
        DataType::kHALF, DataType::kHALF};
    CHECK(plugin->getOutputDataType(0, inTypes, 6) == DataType::kHALF);
    creator.setPluginNamespace("other");
    PassSparseConv2dPlugin* renamed = create(creator, f.make());
    CHECK(renamed != nullptr && std::strcmp(renamed->getPluginNamespace(), "other") == 0);
    release(renamed);
    release(cloned);
    release(restored);
#endif
    release(plugin);

    std::printf("%s: %d failure(s)\n", gFailures == 0 ? "OK" : "FAILED", gFailures);
    return gFailures == 0 ? 0 : 1;
}
"""


@pytest.mark.parametrize("version", HEADER_VERSIONS)
def test_plugin_host_smoke(version, tmp_path):
    headers = _include_dir(_headers(version))
    cxx = shutil.which(os.environ.get("CXX", "g++"))
    if not cxx:
        pytest.skip("no C++ compiler")
    source = tmp_path / "hostSmoke.cpp"
    source.write_text(HOST_SMOKE_CPP)
    exe = tmp_path / "hostSmoke"
    build = subprocess.run(
        [cxx, "-std=c++17", "-O0", "-Wall", "-Wno-deprecated-declarations", "-isystem", str(headers),
         "-isystem", _cuda_include(), "-I", str(KERNEL_DIR), "-I", str(PLUGIN_DIR), str(source),
         str(PLUGIN_DIR / "passSparseConv2dPlugin.cpp"), "-o", str(exe)],
        capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and "OK: 0 failure(s)" in run.stdout, run.stdout + run.stderr


# --------------------------------------------------------------------------------------------
# A real engine (TensorRT, a GPU and the built library).

# The functions behind contract's activation names; the codes come from the contract.
ACTIVATION_FNS = {None: None, "relu": F.relu, "relu6": F.relu6, "hardswish": F.hardswish, "silu": F.silu,
                  "sigmoid": torch.sigmoid}


def _activation(code, alpha):
    name = contract.ACTIVATION_NAMES[code]
    return (lambda v: F.leaky_relu(v, alpha)) if name == "leaky_relu" else ACTIVATION_FNS[name]


def _plugin_library():
    env = os.environ.get("PASSRT_TRT_PLUGIN")
    candidates = [Path(env)] if env else [PLUGIN_DIR / "build" / "libpassrt_trt.so"]
    for c in candidates:
        if c.is_file():
            return c
    skip_or_fail(f"libpassrt_trt.so not built ({', '.join(map(str, candidates))}; set PASSRT_TRT_PLUGIN)")


def _onnx_model(shapes, weight, bias, attrs, with_residual):
    """One PassSparseConv2d node, as the exporter writes it (domain passrt, opset 13, IR 7 for TensorRT 8)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    names = ["x", "tile_mask", "cache_in", "weight", "bias"] + (["residual"] if with_residual else [])
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shapes[n])
              for n in names if n not in ("weight", "bias")]
    node = helper.make_node("PassSparseConv2d", names, ["cache_out"], domain="passrt", plugin_version="1",
                            plugin_namespace="passrt", **attrs)
    graph = helper.make_graph([node], "pass_sparse_conv2d", inputs,
                              [helper.make_tensor_value_info("cache_out", TensorProto.FLOAT, shapes["cache_in"])],
                              initializer=[numpy_helper.from_array(weight.numpy().astype(np.float32), "weight"),
                                           numpy_helper.from_array(bias.numpy().astype(np.float32), "bias")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("passrt", 1)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _build_engine(trt, logger, model_bytes, fp16):
    builder = trt.Builder(logger)
    explicit_batch = 0 if int(trt.__version__.split(".")[0]) >= 10 else \
        1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(explicit_batch)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(model_bytes):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        pytest.fail(f"ONNX parser rejected the PassSparseConv2d node:\n{errors}")
    config = builder.create_builder_config()
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    serialized = builder.build_serialized_network(network, config)
    assert serialized is not None, "engine build failed (see TensorRT's log)"
    return trt.Runtime(logger).deserialize_cuda_engine(serialized)


def _run(trt, engine, context, tensors):
    """Runs the engine on CUDA tensors by name (TensorRT 8.5+/10 tensor API, else bindings)."""
    stream = torch.cuda.current_stream()
    if hasattr(context, "set_tensor_address") and hasattr(context, "execute_async_v3"):
        for name, t in tensors.items():
            context.set_tensor_address(name, t.data_ptr())
        assert context.execute_async_v3(stream.cuda_stream)
    else:
        bindings = [0] * engine.num_bindings
        for name, t in tensors.items():
            bindings[engine.get_binding_index(name)] = t.data_ptr()
        assert context.execute_async_v2(bindings, stream.cuda_stream)
    stream.synchronize()


ACT = contract.ACTIVATION_CODES
CASES = {
    # name: (N, C_in, H, W, C_out, k, stride, dilation, pads (top, left, bottom, right), group, tile,
    #        activation, alpha, post_activation, residual, fp16)
    "asymmetric-pads-grouped-residual": (2, 4, 10, 11, 8, 3, 2, 1, (1, 0, 1, 2), 2, 2, ACT["leaky_relu"], 0.2,
                                         ACT["relu"], True, False),
    "depthwise-relu6": (1, 6, 13, 9, 6, 3, 1, 1, (1, 1, 1, 1), 6, 4, ACT["relu6"], 0.0, ACT[None], False, False),
    "dilated-silu-residual": (1, 8, 9, 12, 5, 3, 1, 2, (2, 2, 2, 2), 1, 3, ACT["silu"], 0.0, ACT[None], True, False),
    "fp16-hardswish": (1, 8, 12, 12, 16, 1, 1, 1, (0, 0, 0, 0), 1, 4, ACT["hardswish"], 0.0, ACT[None], True, True),
}


@pytest.mark.tensorrt
@pytest.mark.parametrize("case", list(CASES))
def test_engine_matches_reference(case):
    try:
        import tensorrt as trt  # Imported here: most machines (and CI) have no TensorRT.
    except ImportError as e:
        skip_or_fail(f"TensorRT's Python package is not installed ({e})")
    if not torch.cuda.is_available():
        skip_or_fail("no CUDA device for TensorRT")
    import ctypes

    # Loading the library registers the plugin; after `import tensorrt`, so that the library binds
    # to the libnvinfer already in the process and registers in its registry.
    ctypes.CDLL(str(_plugin_library()), mode=ctypes.RTLD_GLOBAL)

    n, cin, h, w, cout, k, s, d, pads, g, tile, act, alpha, post, with_residual, fp16 = CASES[case]
    top, left, bottom, right = pads
    ho = (h + top + bottom - d * (k - 1) - 1) // s + 1
    wo = (w + left + right - d * (k - 1) - 1) // s + 1
    th, tw = tile_grid(ho, wo, tile)
    gen = torch.Generator().manual_seed(len(case))
    weight = torch.randn(cout, cin // g, k, k, generator=gen) * 0.5
    bias = torch.randn(cout, generator=gen)
    shapes = {"x": [n, cin, h, w], "tile_mask": [n, 1, th, tw], "cache_in": [n, cout, ho, wo],
              "residual": [n, cout, ho, wo]}
    attrs = dict(kernel_shape=[k, k], strides=[s, s], dilations=[d, d], pads=list(pads), group=g, tile=tile,
                 activation=act, activation_alpha=float(alpha), post_activation=post)

    logger = trt.Logger(trt.Logger.WARNING)
    engine = _build_engine(trt, logger, _onnx_model(shapes, weight, bias, attrs, with_residual), fp16)
    context = engine.create_execution_context()

    act_fn, post_fn = _activation(act, alpha), _activation(post, alpha)
    cache = torch.randn(n, cout, ho, wo, generator=gen)
    for _ in range(2):  # the second frame starts from the first one's cache_out
        x = torch.randn(n, cin, h, w, generator=gen)
        mask = (torch.rand(n, 1, th, tw, generator=gen) > 0.5).float()
        residual = torch.randn(n, cout, ho, wo, generator=gen) if with_residual else None
        want = cache.clone()
        for i in range(n):  # the reference is batch 1; padding in its (top, bottom, left, right) order
            sparse_conv2d(x[i:i + 1], weight, bias, want[i:i + 1], mask[i, 0], stride=s,
                          padding=(top, bottom, left, right), dilation=d, groups=g, tile=tile, activation=act_fn,
                          residual=None if residual is None else residual[i:i + 1])
        cells = mask.repeat_interleave(tile, 2).repeat_interleave(tile, 3)[:, :, :ho, :wo].bool()
        if post_fn is not None:  # the reference has no post-activation: apply it on the active cells
            want = torch.where(cells, post_fn(want), want)

        tensors = {"x": x, "tile_mask": mask, "cache_in": cache, "cache_out": torch.empty_like(cache)}
        if with_residual:
            tensors["residual"] = residual
        tensors = {name: t.cuda().contiguous() for name, t in tensors.items()}
        _run(trt, engine, context, tensors)
        got = tensors["cache_out"].cpu()
        tol = dict(rtol=2e-2, atol=2e-2) if fp16 else dict(rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(got, want, **tol)
        if not fp16:  # inactive cells are the previous cache, bit for bit (fp16 I/O would round them)
            keep = ~cells.expand_as(cache)
            assert torch.equal(got[keep], cache[keep])
        cache = got
