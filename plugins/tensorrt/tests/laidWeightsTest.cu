// The TensorRT plugin's weights laid out once (LaidWeights, laidWeights.h) on a real GPU, without TensorRT:
// the part of the plugin's channel-last path that TensorRT does not own. Built and run by
// benchmarks/gpu_check.py (step "plugin-weights") and tests/plugins/test_laid_weights.py:
//
//   nvcc -std=c++17 -Ipassrt/csrc/kernels -Iplugins/tensorrt plugins/tensorrt/tests/laidWeightsTest.cu \
//        plugins/tensorrt/laidWeights.cpp passrt/csrc/kernels/tiles_nhwc.cu -o laidWeightsTest
//
// For SSDLite's 12-channel head (groups 1), a grouped conv and a depthwise conv, fp32 and fp16:
// 1. eager frames: the first lays the weight out into the plugin's memory (bit for bit what
//    kernelLayoutCuda writes), later frames launch nothing and hand the kernels the same pointers;
// 2. a frame captured into a CUDA graph: the layout is recorded in the graph (its replay writes the weight)
//    and not taken as done, so the next eager frame lays out again and the one after does not;
// 3. a capture before any memory was reserved: no cudaMalloc during the capture, the workspace serves.
// Prints one PASS or FAIL line per part. Exit status: 0 passed, 1 failed, 77 no GPU (1 under
// PASSRT_REQUIRE_GPU=1: a GPU job must not pass by skipping).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "laidWeights.h"

using passrt::DataType;
using passrt::SparseConvParams;
using passrt::trt::LaidWeights;

namespace {

int failures = 0;
#define EXPECT(cond, ...)                                                  \
  do {                                                                     \
    if (!(cond)) {                                                         \
      ++failures;                                                          \
      std::fprintf(stderr, "  check failed %s:%d: ", __FILE__, __LINE__); \
      std::fprintf(stderr, __VA_ARGS__);                                   \
      std::fprintf(stderr, "\n");                                          \
    }                                                                      \
  } while (0)

#define CUDA_OK(call)                                                                                   \
  do {                                                                                                  \
    cudaError_t e_ = (call);                                                                            \
    if (e_ != cudaSuccess) {                                                                            \
      std::printf("FAIL: %s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));          \
      std::exit(1);                                                                                     \
    }                                                                                                   \
  } while (0)

struct Conv {
  const char* name;
  int c_in, c_out, k, groups;
};

SparseConvParams params(const Conv& c) {
  SparseConvParams p{};
  p.batch = 1;
  p.in_channels = c.c_in;
  p.out_channels = c.c_out;
  p.in_h = p.in_w = p.out_h = p.out_w = 12;
  p.kernel_h = p.kernel_w = c.k;
  p.stride_h = p.stride_w = p.dilation_h = p.dilation_w = 1;
  p.pad_top = p.pad_left = c.k / 2;
  p.groups = c.groups;
  p.tile = 4;
  return p;
}

std::vector<char> download(const void* ptr, size_t bytes) {
  std::vector<char> v(bytes);
  CUDA_OK(cudaMemcpy(v.data(), ptr, bytes, cudaMemcpyDeviceToHost));
  return v;
}

// One conv in one dtype; returns the parts' failures through `failures`.
void check(const Conv& c, DataType dt, int part) {
  const SparseConvParams p = params(c);
  const size_t element = dt == DataType::kFloat16 ? 2 : 4;
  const size_t count = (size_t)c.c_out * (c.c_in / c.groups) * c.k * c.k;
  const size_t weightBytes = count * element, biasBytes = (size_t)c.c_out * 4;
  std::mt19937 g(part * 131 + c.c_out);
  std::normal_distribution<float> d;
  std::vector<char> host(weightBytes), hostBias((size_t)c.c_out * element);
  for (size_t i = 0; i < count; ++i) {
    const float v = d(g);
    if (dt == DataType::kFloat16) {
      const __half h = __float2half(v);
      std::memcpy(&host[i * 2], &h, 2);
    } else {
      std::memcpy(&host[i * 4], &v, 4);
    }
  }
  for (int i = 0; i < c.c_out; ++i) {
    const float v = d(g);
    if (dt == DataType::kFloat16) {
      const __half h = __float2half(v);
      std::memcpy(&hostBias[i * 2], &h, 2);
    } else {
      std::memcpy(&hostBias[i * 4], &v, 4);
    }
  }
  void *w, *b, *refW, *wsW;
  float *refB, *wsB;
  CUDA_OK(cudaMalloc(&w, weightBytes));
  CUDA_OK(cudaMalloc(&b, hostBias.size()));
  CUDA_OK(cudaMalloc(&refW, weightBytes));
  CUDA_OK(cudaMalloc(&refB, biasBytes));
  CUDA_OK(cudaMalloc(&wsW, weightBytes));
  CUDA_OK(cudaMalloc(&wsB, biasBytes));
  CUDA_OK(cudaMemcpy(w, host.data(), weightBytes, cudaMemcpyHostToDevice));
  CUDA_OK(cudaMemcpy(b, hostBias.data(), hostBias.size(), cudaMemcpyHostToDevice));
  cudaStream_t s;
  CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  CUDA_OK(passrt::kernelLayoutCuda(p, dt, w, b, refW, refB, s));  // what every path must produce
  CUDA_OK(cudaStreamSynchronize(s));
  const auto wantW = download(refW, weightBytes), wantB = download(refB, biasBytes);
  const char* type = dt == DataType::kFloat16 ? "fp16" : "fp32";
  void const* laidW = nullptr;
  float const* laidB = nullptr;

  if (part == 1) {  // eager frames
    LaidWeights laid;
    for (int frame = 0; frame < 3; ++frame) {
      CUDA_OK(laid.prepare(p, dt, weightBytes, biasBytes, w, b, wsW, wsB, s, laidW, laidB));
      CUDA_OK(cudaStreamSynchronize(s));
      EXPECT(laid.layouts() == 1, "%s %s frame %d: %d layouts, want 1", c.name, type, frame, laid.layouts());
      EXPECT(laidW != wsW && laidB != wsB, "%s %s: the workspace was used", c.name, type);
      EXPECT(download(laidW, weightBytes) == wantW && download(laidB, biasBytes) == wantB,
             "%s %s frame %d: laid-out weight differs from kernelLayoutCuda's", c.name, type, frame);
    }
  } else if (part == 2) {  // a captured frame, then eager ones
    LaidWeights laid;
    EXPECT(laid.reserve(weightBytes, biasBytes), "%s %s: reserve failed", c.name, type);
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    CUDA_OK(laid.prepare(p, dt, weightBytes, biasBytes, w, b, wsW, wsB, s, laidW, laidB));
    CUDA_OK(cudaStreamEndCapture(s, &graph));
    CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
    CUDA_OK(cudaGraphLaunch(exec, s));
    CUDA_OK(cudaStreamSynchronize(s));
    EXPECT(laidW != wsW && download(laidW, weightBytes) == wantW && download(laidB, biasBytes) == wantB,
           "%s %s: the graph's replay did not lay the weight out", c.name, type);
    CUDA_OK(laid.prepare(p, dt, weightBytes, biasBytes, w, b, wsW, wsB, s, laidW, laidB));
    EXPECT(laid.layouts() == 2, "%s %s: eager frame after a capture: %d layouts, want 2", c.name, type,
           laid.layouts());
    CUDA_OK(laid.prepare(p, dt, weightBytes, biasBytes, w, b, wsW, wsB, s, laidW, laidB));
    CUDA_OK(cudaStreamSynchronize(s));
    EXPECT(laid.layouts() == 2, "%s %s: second eager frame: %d layouts, want 2", c.name, type, laid.layouts());
    EXPECT(download(laidW, weightBytes) == wantW, "%s %s: weight differs after the eager frames", c.name, type);
    CUDA_OK(cudaGraphExecDestroy(exec));
    CUDA_OK(cudaGraphDestroy(graph));
  } else {  // a capture with nothing reserved: the workspace, no cudaMalloc during the capture
    LaidWeights laid;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CUDA_OK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal));
    const cudaError_t e = laid.prepare(p, dt, weightBytes, biasBytes, w, b, wsW, wsB, s, laidW, laidB);
    CUDA_OK(cudaStreamEndCapture(s, &graph));  // fails if anything illegal ran during the capture
    CUDA_OK(e);
    EXPECT(laidW == wsW && laidB == wsB && laid.layouts() == 0, "%s %s: not the workspace under capture", c.name,
           type);
    CUDA_OK(cudaGraphInstantiate(&exec, graph, 0));
    CUDA_OK(cudaGraphLaunch(exec, s));
    CUDA_OK(cudaStreamSynchronize(s));
    EXPECT(download(wsW, weightBytes) == wantW && download(wsB, biasBytes) == wantB,
           "%s %s: the workspace layout differs", c.name, type);
    CUDA_OK(cudaGraphExecDestroy(exec));
    CUDA_OK(cudaGraphDestroy(graph));
  }
  CUDA_OK(cudaStreamDestroy(s));
  for (void* ptr : {w, b, refW, static_cast<void*>(refB), wsW, static_cast<void*>(wsB)}) CUDA_OK(cudaFree(ptr));
}

}  // namespace

int main() {
  int devices = 0;
  const cudaError_t e = cudaGetDeviceCount(&devices);
  if (e != cudaSuccess || devices == 0) {
    const char* req = std::getenv("PASSRT_REQUIRE_GPU");
    const bool required = req && *req && std::strcmp(req, "0") != 0;
    std::printf("%s: plugin weight layout not run: no CUDA device (%s)\n", required ? "FAIL" : "SKIP",
                e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    return required ? 1 : 77;
  }
  const Conv convs[] = {{"12-channel head 96->12 k3", 96, 12, 3, 1},
                        {"grouped 8->12 g4 k3", 8, 12, 3, 4},
                        {"depthwise 12 k3", 12, 12, 3, 12}};
  const char* parts[] = {"", "laid out once over eager frames (one layout, later frames launch nothing)",
                         "a frame captured into a CUDA graph lays out in the graph; the next eager frame once more",
                         "capture before any memory: no cudaMalloc, the workspace serves"};
  for (int part = 1; part <= 3; ++part) {
    const int before = failures;
    for (const Conv& c : convs)
      for (DataType dt : {DataType::kFloat32, DataType::kFloat16}) check(c, dt, part);
    std::printf("%s: plugin weights: %s\n", failures == before ? "PASS" : "FAIL", parts[part]);
  }
  return failures ? 1 : 0;
}
