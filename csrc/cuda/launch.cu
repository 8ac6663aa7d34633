// Host helpers of the CUDA launchers (csrc/cuda/launch.cuh), and the CUDA version this
// extension was built with (read by ndops/_ext.py, which compares it with torch.version.cuda).
#include "cuda/launch.cuh"

#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <cstring>

// CUDART_VERSION of the toolkit that compiled the extension: 1000 * major + 10 * minor.
extern "C" int ndops_cuda_build_version() { return CUDART_VERSION; }

namespace ndops {
namespace cuda {
namespace {

template <typename T>
at::Tensor pinned_copy_to(const T* values, int64_t count, at::ScalarType type,
                          c10::Device device) {
  at::Tensor host = at::empty({count}, at::TensorOptions().dtype(type).pinned_memory(true));
  if (count > 0) std::memcpy(host.data_ptr(), values, count * sizeof(T));
  return host.to(device, /*non_blocking=*/true);
}

}  // namespace

at::Tensor table_to_device(const std::vector<int64_t>& values, c10::Device device) {
  return pinned_copy_to(values.data(), static_cast<int64_t>(values.size()), at::kLong, device);
}

at::Tensor table_to_device(const std::vector<double>& values, at::ScalarType type,
                           c10::Device device) {
  if (type == at::kDouble) {
    return pinned_copy_to(values.data(), static_cast<int64_t>(values.size()), type, device);
  }
  TORCH_CHECK(type == at::kFloat, "ndops: weight tables are float32 or float64, got ", type);
  const std::vector<float> narrowed(values.begin(), values.end());
  return pinned_copy_to(narrowed.data(), static_cast<int64_t>(narrowed.size()), type, device);
}

at::Tensor error_flag(c10::Device device) {
  return at::zeros({1}, at::TensorOptions().dtype(at::kInt).device(device));
}

void check_error_flag(const at::Tensor& flag, const char* message) {
  TORCH_CHECK(flag.item<int32_t>() == 0, message);
}

}  // namespace cuda
}  // namespace ndops
