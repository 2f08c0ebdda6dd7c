// CUDA kernel of passrt's PyTorch op: checks (ops.cpp), then the framework-free CUDA API
// (kernels/) on PyTorch's current stream of the input's device. Nothing here
// synchronises: errors are launch errors (cudaGetLastError), reported as Python exceptions.
//
// c10/cuda/CUDAStream.h instead of ATen/cuda/CUDAContext.h: the same current stream
// (at::cuda::getCurrentCUDAStream is c10::cuda's), without CUDAContext.h's cuBLAS, cuSPARSE
// and cuSOLVER headers, which a CUDA toolkit without those libraries lacks.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>
#include <torch/library.h>

#include <optional>

#include "ops.h"

namespace passrt::op {
namespace {

constexpr Backend kCuda{c10::DeviceType::CUDA, /*half=*/true};

const void* ptrOrNull(const std::optional<at::Tensor>& t) { return t ? t->data_ptr() : nullptr; }

void check(cudaError_t err, const char* op) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA kernel launch failed: ", cudaGetErrorString(err));
}

cudaStream_t streamOf(const at::Tensor& t) { return c10::cuda::getCurrentCUDAStream(t.device().index()).stream(); }

void sparseConv2dCudaOp(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                        const std::optional<at::Tensor>& residual, const at::Tensor& tile_mask, at::Tensor& output,
                        at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef dilation, int64_t groups,
                        int64_t tile, int64_t act, double act_alpha, int64_t post_act) {
  const SparseConvParams p = sparseConvParams(input, weight, bias, residual, tile_mask, output, stride, padding,
                                              dilation, groups, tile, act, act_alpha, post_act, kCuda);
  if (output.numel() == 0) return;
  const c10::cuda::CUDAGuard guard(input.device());
  check(sparseConv2d(p, dataType(input), input.data_ptr(), weight.data_ptr(), ptrOrNull(bias), ptrOrNull(residual),
                     tile_mask.data_ptr<float>(), output.data_ptr(), streamOf(input)),
        "passrt::sparse_conv2d");
}

}  // namespace
}  // namespace passrt::op

TORCH_LIBRARY_IMPL(passrt, CUDA, m) { m.impl("sparse_conv2d", &passrt::op::sparseConv2dCudaOp); }
