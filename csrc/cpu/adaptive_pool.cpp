// CPU kernels of adaptive_avg_pool_nd, adaptive_max_pool_nd and _adaptive_avg_pool_nd_backward
// (schemas: csrc/ndops.cpp). Output o of a dim pools input [floor(o * in / out),
// ceil((o + 1) * in / out)) (csrc/common/window.h): a box window like the sliding ones, so the
// same engine (csrc/cpu/pool_engine.h) runs them. Adaptive max pooling's backward is
// _max_pool_nd_backward (csrc/cpu/pool.cpp): a scatter by the forward's indices.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>


#include "common/pool_shape.h"
#include "cpu/huge_pages.h"
#include "cpu/pool_engine.h"

namespace ndops {
namespace pool_cpu {
namespace {

// The pool of (B, C, *input spatial) -> (B, C, *output_size); the divisor of an average is
// the window's size.
BoxPool adaptive_pool(c10::IntArrayRef input_sizes, c10::IntArrayRef output_size) {
  BoxPool pool;
  pool.planes = input_sizes[0] * input_sizes[1];
  for (size_t d = 0; d < output_size.size(); ++d) {
    DimTaps dim;
    dim.in_size = input_sizes[2 + d];
    for (int64_t o = 0; o < output_size[d]; ++o) {
      const WindowTaps taps = adaptive_window_taps(o, dim.in_size, output_size[d]);
      dim.add(taps, taps.count);
    }
    dim.find_regular_run();
    pool.dims.push_back(std::move(dim));
  }
  return pool;
}

at::Tensor adaptive_avg_pool_nd_cpu(const at::Tensor& input, c10::IntArrayRef output_size) {
  check_adaptive_output("ndops::adaptive_avg_pool_nd", input.sizes(), output_size);
  at::Tensor out = empty_with_huge_pages(with_spatial(input.sizes(), output_size), input.options(),
                                         input.nbytes());
  if (out.numel() == 0) return out;
  const BoxPool pool = adaptive_pool(input.sizes(), output_size);
  box_avg_forward(input, pool, out);
  return out;
}

std::tuple<at::Tensor, at::Tensor> adaptive_max_pool_nd_cpu(const at::Tensor& input,
                                                            c10::IntArrayRef output_size,
                                                            bool return_indices) {
  check_adaptive_output("ndops::adaptive_max_pool_nd", input.sizes(), output_size);
  auto [values, indices] = empty_max_pool_results(input, output_size, return_indices);
  advise_huge_pages(values, input.nbytes());
  advise_huge_pages(indices, input.nbytes());
  if (values.numel() == 0) return {values, indices};
  const BoxPool pool = adaptive_pool(input.sizes(), output_size);
  box_max_forward(input, pool, values, return_indices ? &indices : nullptr);
  return {values, indices};
}

at::Tensor adaptive_avg_pool_nd_backward_cpu(const at::Tensor& grad_output,
                                             c10::IntArrayRef input_size) {
  const c10::IntArrayRef output_size =
      adaptive_avg_backward_size("ndops::_adaptive_avg_pool_nd_backward", grad_output, input_size);
  at::Tensor grad_input =
      empty_with_huge_pages(input_size, grad_output.options(), grad_output.nbytes());
  if (grad_input.numel() == 0) return grad_input;
  if (grad_output.numel() == 0) return grad_input.zero_();
  const BoxPool pool = adaptive_pool(input_size, output_size);
  box_avg_backward(grad_output, pool, grad_input);
  return grad_input;
}

}  // namespace
}  // namespace pool_cpu
}  // namespace ndops

TORCH_LIBRARY_IMPL(ndops, CPU, m) {
  m.impl("adaptive_avg_pool_nd", &ndops::pool_cpu::adaptive_avg_pool_nd_cpu);
  m.impl("adaptive_max_pool_nd", &ndops::pool_cpu::adaptive_max_pool_nd_cpu);
  m.impl("_adaptive_avg_pool_nd_backward", &ndops::pool_cpu::adaptive_avg_pool_nd_backward_cpu);
}
