#!/usr/bin/env bash
# Compile-checks the TensorRT plugin against one set of TensorRT headers, without TensorRT's
# libraries or a GPU: the way to see that the plugin still builds for TensorRT 8 (the
# IPluginV2DynamicExt classes) and 10 (the IPluginV3 classes) on a machine that has neither.
#
#   plugins/tensorrt/compile_check.sh HEADERS [extra compiler flags...]
#
# HEADERS: a TensorRT include/ directory (the one holding NvInfer.h), or a directory with such an
# include/ inside (e.g. /tmp/trt-headers/8.2.1). The CUDA headers come from $CUDA_HOME/include, else
# from the nvcc on PATH, else /usr/local/cuda/include. CXX (default g++) and CXX_STD (default c++17)
# choose the compiler and standard. Exit status: 0 compiled, 1 compile error, 2 missing prerequisites.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ $# -lt 1 ]]; then
    echo "usage: $0 TENSORRT_INCLUDE_DIR [compiler flags...]" >&2
    exit 2
fi
headers="$1"
shift
if [[ ! -f "$headers/NvInfer.h" && -f "$headers/include/NvInfer.h" ]]; then
    headers="$headers/include"
fi
if [[ ! -f "$headers/NvInferVersion.h" ]]; then
    echo "compile_check: no TensorRT headers (NvInferVersion.h) in $headers" >&2
    exit 2
fi

cuda_include=""
for candidate in "${CUDA_HOME:+$CUDA_HOME/include}" \
                 "$(command -v nvcc >/dev/null 2>&1 && dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")/include" \
                 /usr/local/cuda/include; do
    if [[ -n "$candidate" && -f "$candidate/cuda_runtime_api.h" ]]; then
        cuda_include="$candidate"
        break
    fi
done
if [[ -z "$cuda_include" ]]; then
    echo "compile_check: no CUDA headers (cuda_runtime_api.h); set CUDA_HOME" >&2
    exit 2
fi

cxx="${CXX:-g++}"
if ! command -v "$cxx" >/dev/null 2>&1; then
    echo "compile_check: compiler $cxx not found" >&2
    exit 2
fi

# Ask the preprocessor: newer headers define the version through other macros (TRT_MAJOR_ENTERPRISE).
version="$(printf '#include "NvInferVersion.h"\nNV_TENSORRT_MAJOR.NV_TENSORRT_MINOR.NV_TENSORRT_PATCH\n' \
           | "$cxx" -E -P -x c++ -I "$headers" - | tr -d ' ' | grep -E '^[0-9]+\.[0-9]+\.[0-9]+$' || true)"
if [[ -z "$version" ]]; then
    echo "compile_check: cannot read the TensorRT version from $headers/NvInferVersion.h" >&2
    exit 2
fi
major="${version%%.*}"

# From 8.5 on, TensorRT 8's headers deprecate IPluginV2, which IPluginCreator::createPlugin() must
# still return on TensorRT 8 (8.2's headers do not); the warning says nothing about this code, so it
# is silenced for TensorRT 8. TensorRT 10 needs no exception: its branch uses only current interfaces.
version_flags=()
if [[ "$major" -lt 10 ]]; then
    version_flags+=(-Wno-deprecated-declarations)
fi

# A real compile (-c -o /dev/null) rather than -fsyntax-only: some warnings, such as an unused
# function, only appear with code generation. -isystem for TensorRT and
# CUDA: warnings in their headers are theirs; -Werror keeps ours from creeping in.
# The plugin's sources for this TensorRT generation: the V3 classes for 10+, the V2 classes for 8.x,
# plus what both share (the same selection as CMakeLists.txt).
if [[ "$major" -ge 10 ]]; then
    generation="$here/passSparseConv2dPluginV3.cpp"
else
    generation="$here/passSparseConv2dPluginV2.cpp"
fi
sources=("$here/sparseConvAttributes.cpp" "$here/passSparseConv2dPluginCommon.cpp" "$here/laidWeights.cpp"
         "$generation")
echo "compile_check: TensorRT $version headers from $headers"
for source in "${sources[@]}"; do
    cmd=("$cxx" "-std=${CXX_STD:-c++17}" -c -o /dev/null -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Werror
         "${version_flags[@]}"
         -isystem "$headers" -isystem "$cuda_include" -I "$here/../../passrt/csrc/kernels" -I "$here"
         "$@" "$source")
    echo "+ ${cmd[*]}"
    if ! "${cmd[@]}"; then
        echo "compile_check: FAILED (TensorRT $version)" >&2
        exit 1
    fi
done
echo "compile_check: OK (TensorRT $version)"
