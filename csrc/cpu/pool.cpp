// CPU kernels of max_pool_nd, avg_pool_nd, max_unpool_nd and their backward passes (schemas:
// csrc/ndops.cpp; window math: csrc/common/window.h; the pooling engine: pool_engine.h).
//
// _max_pool_nd_backward (also adaptive max pooling's) scatters grad by the forward's flat
// indices, one (b, c) plane per task; max_unpool_nd scatters values the same way (a later
// index overwrites an earlier one, like torch), and _max_unpool_nd_backward gathers by index.
// These two are each other's adjoints, which gives every max op its double backward.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <optional>
#include <type_traits>
#include <vector>

#include "common/pool_shape.h"
#include "cpu/huge_pages.h"
#include "cpu/pool_engine.h"

namespace ndops {
namespace pool_cpu {
namespace {

// The pool of a checked window (max_pool_window, avg_pool_window).
BoxPool sliding_pool(int64_t planes, const SlidingWindow& w, bool is_max,
                     bool count_include_pad, std::optional<int64_t> divisor_override) {
  BoxPool pool;
  pool.planes = planes;
  pool.divisor_override = divisor_override;
  for (size_t d = 0; d < w.in.size(); ++d) {
    DimTaps dim;
    dim.in_size = w.in[d];
    dim.step = w.dilation[d];
    for (int64_t o = 0; o < w.out[d]; ++o) {
      const WindowTaps taps = sliding_window_taps(o, w.in[d], w.kernel[d], w.stride[d],
                                                  w.padding[d], w.dilation[d]);
      dim.add(taps, is_max ? 1
                           : avg_window_divisor(o, w.in[d], w.kernel[d], w.stride[d],
                                                w.padding[d], count_include_pad));
    }
    dim.find_regular_run();
    pool.dims.push_back(std::move(dim));
  }
  return pool;
}

// target[p, index[p, o]] += source[p, o] for each of `planes` planes, one plane per task (so
// no two threads write one element), accumulating in opmath_type.
template <typename scalar_t>
void scatter_add_planes(const scalar_t* source, const int64_t* index, int64_t source_plane,
                        scalar_t* target, int64_t planes, int64_t target_plane) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool kInPlace = std::is_same_v<acc_t, scalar_t>;  // else via a float buffer
  at::parallel_for(0, planes, tasks_grain(source_plane + target_plane), [&](int64_t begin,
                                                                           int64_t end) {
    std::vector<acc_t> converted(kInPlace ? 0 : target_plane);
    for (int64_t plane = begin; plane < end; ++plane) {
      scalar_t* out = target + plane * target_plane;
      acc_t* acc = nullptr;
      if constexpr (kInPlace) {
        acc = out;
      } else {
        acc = converted.data();
      }
      ZeroAhead<acc_t> zero(acc, target_plane);
      const int64_t* plane_index = index + plane * source_plane;
      const scalar_t* plane_source = source + plane * source_plane;
      for (int64_t o = 0; o < source_plane; ++o) {
        const int64_t i = plane_index[o];
        TORCH_CHECK(i >= 0 && i < target_plane, "ndops::_max_pool_nd_backward: index ", i,
                    " is out of range for a plane of ", target_plane, " elements");
        zero.reach(i + 1);
        acc[i] += static_cast<acc_t>(plane_source[o]);
      }
      zero.finish();
      if constexpr (!kInPlace) {
        for (int64_t i = 0; i < target_plane; ++i) out[i] = static_cast<scalar_t>(acc[i]);
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> max_pool_nd_cpu(
    const at::Tensor& input, c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
    c10::IntArrayRef padding, c10::IntArrayRef dilation, bool ceil_mode, bool return_indices) {
  const char* op = "ndops::max_pool_nd";
  const SlidingWindow w =
      max_pool_window(op, input.sizes(), kernel_size, stride, padding, dilation, ceil_mode);
  const BoxPool pool = sliding_pool(input.size(0) * input.size(1), w, true, false, {});
  auto [values, indices] = empty_max_pool_results(input, w.out, return_indices);
  advise_huge_pages(values, input.nbytes());
  advise_huge_pages(indices, input.nbytes());
  if (values.numel() == 0) return {values, indices};
  box_max_forward(input, pool, values, return_indices ? &indices : nullptr);
  return {values, indices};
}

at::Tensor avg_pool_nd_cpu(const at::Tensor& input, c10::IntArrayRef kernel_size,
                           c10::IntArrayRef stride, c10::IntArrayRef padding, bool ceil_mode,
                           bool count_include_pad, std::optional<int64_t> divisor_override) {
  const SlidingWindow w = avg_pool_window("ndops::avg_pool_nd", input.sizes(), kernel_size,
                                          stride, padding, ceil_mode, divisor_override);
  const BoxPool pool = sliding_pool(input.size(0) * input.size(1), w, false, count_include_pad,
                                    divisor_override);
  at::Tensor out =
      empty_with_huge_pages(with_spatial(input.sizes(), w.out), input.options(), input.nbytes());
  if (out.numel() == 0) return out;
  box_avg_forward(input, pool, out);
  return out;
}

at::Tensor avg_pool_nd_backward_cpu(const at::Tensor& grad_output, c10::IntArrayRef input_size,
                                    c10::IntArrayRef kernel_size, c10::IntArrayRef stride,
                                    c10::IntArrayRef padding, bool ceil_mode,
                                    bool count_include_pad,
                                    std::optional<int64_t> divisor_override) {
  const SlidingWindow w =
      avg_pool_window("ndops::_avg_pool_nd_backward", input_size, kernel_size, stride, padding,
                      ceil_mode, divisor_override, grad_output.sizes());
  const BoxPool pool = sliding_pool(input_size[0] * input_size[1], w, false, count_include_pad,
                                    divisor_override);
  at::Tensor grad_input =
      empty_with_huge_pages(input_size, grad_output.options(), grad_output.nbytes());
  if (grad_input.numel() == 0) return grad_input;
  box_avg_backward(grad_output, pool, grad_input);
  return grad_input;
}

// grad_input[b, c, indices[b, c, o]] += grad_output[b, c, o], flat over each plane.
at::Tensor max_pool_nd_backward_cpu(const at::Tensor& grad_output, const at::Tensor& indices,
                                    c10::IntArrayRef input_size) {
  const char* op = "ndops::_max_pool_nd_backward";
  check_pool_grad_output(op, grad_output, input_size);
  check_indices(op, indices, grad_output.sizes());
  at::Tensor grad_input =
      empty_with_huge_pages(input_size, grad_output.options(), grad_output.nbytes());
  if (grad_input.numel() == 0) return grad_input;
  const at::Tensor grad = grad_output.contiguous(), index = indices.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "_max_pool_nd_backward", [&] {
        scatter_add_planes(grad.const_data_ptr<scalar_t>(), index.const_data_ptr<int64_t>(),
                           spatial_numel(indices.sizes()), grad_input.mutable_data_ptr<scalar_t>(),
                           input_size[0] * input_size[1], spatial_numel(input_size));
      });
  return grad_input;
}

// Zeros of (B, C, *output_size) with out[b, c, indices[b, c, i]] = input[b, c, i], in order.
at::Tensor max_unpool_nd_cpu(const at::Tensor& input, const at::Tensor& indices,
                             c10::IntArrayRef output_size) {
  const char* op = "ndops::max_unpool_nd";
  at::Tensor out = empty_max_unpool_output(op, input, indices, output_size);
  const int64_t planes = input.size(0) * input.size(1);
  const int64_t in_plane = spatial_numel(input.sizes()), out_plane = spatial_numel(out.sizes());
  if (planes == 0) return out;
  const at::Tensor values = input.contiguous(), index = indices.contiguous();
  AT_DISPATCH_ALL_TYPES_AND2(at::kHalf, at::kBFloat16, values.scalar_type(), "max_unpool_nd", [&] {
    const scalar_t* x = values.const_data_ptr<scalar_t>();
    const int64_t* idx = index.const_data_ptr<int64_t>();
    scalar_t* y = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, planes, tasks_grain(in_plane + out_plane), [&](int64_t begin, int64_t end) {
      for (int64_t plane = begin; plane < end; ++plane) {
        scalar_t* target = y + plane * out_plane;
        std::fill(target, target + out_plane, scalar_t(0));
        for (int64_t i = plane * in_plane; i < (plane + 1) * in_plane; ++i) {
          TORCH_CHECK(idx[i] >= 0 && idx[i] < out_plane, op, ": index ", idx[i], " is out of ",
                      "range for an output plane of ", out_plane, " elements");
          target[idx[i]] = x[i];
        }
      }
    });
  });
  return out;
}

// result[b, c, i] = grad_output[b, c, indices[b, c, i]], flat over each plane; the result
// has the shape of indices.
at::Tensor max_unpool_nd_backward_cpu(const at::Tensor& grad_output, const at::Tensor& indices) {
  const char* op = "ndops::_max_unpool_nd_backward";
  at::Tensor result = empty_max_unpool_grad(op, grad_output, indices);
  if (result.numel() == 0) return result;
  const int64_t in_plane = spatial_numel(indices.sizes());
  const int64_t out_plane = spatial_numel(grad_output.sizes());
  const at::Tensor grad = grad_output.contiguous(), index = indices.contiguous();
  AT_DISPATCH_ALL_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "_max_unpool_nd_backward", [&] {
        const scalar_t* g = grad.const_data_ptr<scalar_t>();
        const int64_t* idx = index.const_data_ptr<int64_t>();
        scalar_t* r = result.mutable_data_ptr<scalar_t>();
        at::parallel_for(0, result.numel(), tasks_grain(1), [&](int64_t begin, int64_t end) {
          for (int64_t i = begin; i < end; ++i) {
            TORCH_CHECK(idx[i] >= 0 && idx[i] < out_plane, op, ": index ", idx[i], " is out ",
                        "of range for a plane of ", out_plane, " elements");
            r[i] = g[(i / in_plane) * out_plane + idx[i]];
          }
        });
      });
  return result;
}

}  // namespace
}  // namespace pool_cpu
}  // namespace ndops

TORCH_LIBRARY_IMPL(ndops, CPU, m) {
  m.impl("max_pool_nd", &ndops::pool_cpu::max_pool_nd_cpu);
  m.impl("_max_pool_nd_backward", &ndops::pool_cpu::max_pool_nd_backward_cpu);
  m.impl("avg_pool_nd", &ndops::pool_cpu::avg_pool_nd_cpu);
  m.impl("_avg_pool_nd_backward", &ndops::pool_cpu::avg_pool_nd_backward_cpu);
  m.impl("max_unpool_nd", &ndops::pool_cpu::max_unpool_nd_cpu);
  m.impl("_max_unpool_nd_backward", &ndops::pool_cpu::max_unpool_nd_backward_cpu);
}
