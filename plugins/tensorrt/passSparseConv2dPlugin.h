// PassSparseConv2d: passrt's sparse convolution as a TensorRT plugin (README.md next to this file).
//
// One plugin, two generations, chosen by the TensorRT headers it is compiled against; the classes
// keep the same names in both, so code that includes this header works with either:
//   TensorRT >= 10: IPluginV3 (passSparseConv2dPluginV3.h/.cpp);
//   TensorRT 8.x:   IPluginV2DynamicExt (passSparseConv2dPluginV2.h/.cpp).
// What does not depend on the interface is shared: passSparseConv2dPluginCommon.h/.cpp (error
// reporting, formats, launch, registration) over sparseConvAttributes.h/.cpp (attributes,
// validation, serialization, shape checks: no TensorRT types, compiled in CI with g++ alone).
//
// The plugin is an adapter: the computation is passrt::sparseConv2d (passrt/csrc/kernels).
#pragma once

#include "NvInferVersion.h"

#if NV_TENSORRT_MAJOR >= 10
#include "passSparseConv2dPluginV3.h"
#else
#include "passSparseConv2dPluginV2.h"
#endif
