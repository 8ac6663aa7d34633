// What every CUDA launcher of ndops shares: grid sizing for grid-stride loops, the current
// stream, host tables copied to the device, and a device-side error flag for indices that the
// host cannot check without reading them. Per-dim arguments and reader tables: per_dim.h.
//
// Light on purpose (c10/cuda only, no ATen/cuda/CUDAContext.h): every .cu includes it.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/macros/Macros.h>
#include <c10/util/Exception.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cuda/per_dim.h"

namespace ndops {
namespace cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items: one per kThreads items, at most enough to fill
// every multiprocessor several times over.
inline unsigned int blocks_for(int64_t n, int threads = kThreads) {
  int device = 0, sms = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  const int64_t needed = (n + threads - 1) / threads;
  return static_cast<unsigned int>(
      std::max<int64_t>(1, std::min<int64_t>(needed, int64_t{sms} * 16)));
}

inline int multiprocessors() {
  int device = 0, sms = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

// for (int64_t i = first index of this thread; i < n; i += every thread of the grid)
#define NDOPS_GRID_STRIDE_LOOP(i, n)                                                   \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// A host vector copied to `device`, through pinned memory and the current stream.
at::Tensor table_to_device(const std::vector<int64_t>& values, c10::Device device);
at::Tensor table_to_device(const std::vector<double>& values, at::ScalarType type,
                           c10::Device device);

// A zero int32 on the device that kernels set to 1 when they meet an index out of range, and
// the check that reads it back (one synchronization) and raises `message` if it was set.
at::Tensor error_flag(c10::Device device);
void check_error_flag(const at::Tensor& flag, const char* message);

// ReaderTables (per_dim.h) on `device`: the index table, and the weights as `type`.
inline at::Tensor index_table(const ReaderTables& t, c10::Device device) {
  return table_to_device(t.index, device);
}
inline at::Tensor weight_table(const ReaderTables& t, at::ScalarType type, c10::Device device) {
  return table_to_device(t.weights, type, device);
}

}  // namespace cuda
}  // namespace ndops
