// CPU kernels of pad_nd and _pad_nd_backward (schemas: csrc/ndops.cpp; per-dim index maps:
// csrc/common/pad_index.h). N, the number of padded dims, is a runtime value.
//
// Both kernels walk rows of the last padded dim:
// - forward: per output row, map its outer coordinates once, copy the interior run with
//   std::copy and fill only the borders through the last dim's map;
// - backward: per grad_input row, gather (sum) every grad_output row that copied it. Each task
//   owns whole grad_input rows, so no two threads write one element, the summation order is
//   fixed (deterministic) and the work splits well even with one batch and one channel.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <string_view>
#include <vector>

#include "common/nd_index.h"
#include "common/pad_index.h"
#include "common/pad_shape.h"
#include "cpu/huge_pages.h"

namespace ndops {
namespace {

// Rows per parallel task: enough that a task moves at least ~32K elements.
int64_t rows_per_task(int64_t row_length) {
  return std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(row_length, 1));
}

// A row of the last padded dim is addressed by (lead index, c_0, ..., c_{N-2}), c_d being a
// coordinate of padded dim d; these are the sizes of that index space for `sizes`.
std::vector<int64_t> row_index_space(int64_t lead, const std::vector<int64_t>& sizes) {
  std::vector<int64_t> space{lead};
  space.insert(space.end(), sizes.begin(), sizes.end() - 1);
  return space;
}

int64_t product(const std::vector<int64_t>& sizes) {
  int64_t p = 1;
  for (const int64_t s : sizes) p *= s;
  return p;
}

// The last padded dim's interior [lo, hi) and map, shared by both kernels.
struct LastDim {
  int64_t in_len, out_len, left, lo, hi;
  const int64_t* source;
};

LastDim last_dim(const PadGeometry& g, const std::vector<std::vector<int64_t>>& source) {
  const int d = g.ndim - 1;
  const int64_t lo = pad_interior_begin(g.pad_left[d], g.out_sizes[d]);
  const int64_t hi = pad_interior_end(g.in_sizes[d], g.pad_left[d], g.out_sizes[d]);
  return {g.in_sizes[d], g.out_sizes[d], g.pad_left[d], lo, hi, source[d].data()};
}

template <typename scalar_t>
void pad_forward_rows(const scalar_t* in, scalar_t* out, const PadGeometry& g, PadMode mode,
                      scalar_t fill) {
  const int n = g.ndim;
  const auto source = pad_source_tables(g, mode);
  const LastDim last = last_dim(g, source);
  std::vector<int64_t> in_strides(n);
  contiguous_strides(g.in_sizes.data(), n, in_strides.data());
  const int64_t in_plane = product(g.in_sizes);  // elements per lead index
  const auto rows = row_index_space(g.lead, g.out_sizes);

  at::parallel_for(0, product(rows), rows_per_task(last.out_len), [&](int64_t begin, int64_t end) {
    std::vector<int64_t> coords(n);  // (lead index, o_0, ..., o_{N-2}) of the current row
    unravel_index(begin, rows.data(), n, coords.data());
    for (int64_t row = begin; row < end; ++row, advance_index(coords.data(), rows.data(), n)) {
      scalar_t* out_row = out + row * last.out_len;
      int64_t offset = coords[0] * in_plane;
      bool inside = true;  // false: some outer coordinate lies in a constant-mode border
      for (int d = 0; d + 1 < n; ++d) {
        const int64_t s = source[d][coords[d + 1]];
        inside = inside && s >= 0;
        offset += s * in_strides[d];
      }
      if (!inside) {
        std::fill(out_row, out_row + last.out_len, fill);
        continue;
      }
      const scalar_t* in_row = in + offset;
      std::copy(in_row + (last.lo - last.left), in_row + (last.hi - last.left),
                out_row + last.lo);
      for (int64_t o = 0; o < last.lo; ++o) {
        out_row[o] = last.source[o] < 0 ? fill : in_row[last.source[o]];
      }
      for (int64_t o = last.hi; o < last.out_len; ++o) {
        out_row[o] = last.source[o] < 0 ? fill : in_row[last.source[o]];
      }
    }
  });
}

template <typename scalar_t>
void pad_backward_rows(const scalar_t* grad_out, scalar_t* grad_in, const PadGeometry& g,
                       PadMode mode) {
  using acc_t = at::opmath_type<scalar_t>;
  const int n = g.ndim, outer = g.ndim - 1;
  const auto source = pad_source_tables(g, mode);
  const LastDim last = last_dim(g, source);
  std::vector<int64_t> out_strides(n);
  contiguous_strides(g.out_sizes.data(), n, out_strides.data());
  const int64_t out_plane = product(g.out_sizes);  // elements per lead index
  std::vector<PadSinks> sinks;
  for (int d = 0; d < outer; ++d) {
    sinks.push_back(invert_pad_source(source[d], g.in_sizes[d], out_strides[d]));
  }
  const auto rows = row_index_space(g.lead, g.in_sizes);

  at::parallel_for(0, product(rows), rows_per_task(last.out_len), [&](int64_t begin, int64_t end) {
    std::vector<int64_t> coords(n);  // (lead index, j_0, ..., j_{N-2}) of the current row
    std::vector<int64_t> first(outer), count(outer), pick(outer);
    std::vector<acc_t> acc(last.in_len);
    unravel_index(begin, rows.data(), n, coords.data());
    for (int64_t row = begin; row < end; ++row, advance_index(coords.data(), rows.data(), n)) {
      std::fill(acc.begin(), acc.end(), acc_t(0));
      bool copied = true;  // false: some outer input coordinate was cropped away
      for (int d = 0; d < outer; ++d) {
        first[d] = sinks[d].begin[coords[d + 1]];
        count[d] = sinks[d].begin[coords[d + 1] + 1] - first[d];
        copied = copied && count[d] > 0;
      }
      // Every combination of one sink per outer dim is a grad_output row copying this row.
      std::fill(pick.begin(), pick.end(), 0);
      while (copied) {
        int64_t offset = coords[0] * out_plane;
        for (int d = 0; d < outer; ++d) offset += sinks[d].offsets[first[d] + pick[d]];
        const scalar_t* g_row = grad_out + offset;
        for (int64_t o = last.lo; o < last.hi; ++o) {
          acc[o - last.left] += static_cast<acc_t>(g_row[o]);
        }
        for (int64_t o = 0; o < last.lo; ++o) {
          if (last.source[o] >= 0) acc[last.source[o]] += static_cast<acc_t>(g_row[o]);
        }
        for (int64_t o = last.hi; o < last.out_len; ++o) {
          if (last.source[o] >= 0) acc[last.source[o]] += static_cast<acc_t>(g_row[o]);
        }
        copied = advance_index(pick.data(), count.data(), outer);
      }
      scalar_t* in_row = grad_in + row * last.in_len;
      for (int64_t j = 0; j < last.in_len; ++j) in_row[j] = static_cast<scalar_t>(acc[j]);
    }
  });
}

at::Tensor pad_nd_cpu(const at::Tensor& input, c10::IntArrayRef pad, std::string_view mode,
                      double value) {
  const PadMode pad_mode = parse_pad_mode(mode);
  const PadGeometry g = pad_geometry(input.sizes(), pad, pad_mode);
  if (g.ndim == 0) return input.clone(at::MemoryFormat::Contiguous);
  at::Tensor out = empty_padded(input, g);
  advise_huge_pages(out, input.nbytes());
  if (out.numel() == 0) return out;
  const at::Tensor in = input.contiguous();
  AT_DISPATCH_ALL_TYPES_AND_COMPLEX_AND3(
      at::kHalf, at::kBFloat16, at::kBool, in.scalar_type(), "pad_nd", [&] {
        pad_forward_rows<scalar_t>(in.const_data_ptr<scalar_t>(),
                                   out.mutable_data_ptr<scalar_t>(), g, pad_mode,
                                   pad_fill_value<scalar_t>(pad_mode, value));
      });
  return out;
}

at::Tensor pad_nd_backward_cpu(const at::Tensor& grad_output, c10::IntArrayRef input_size,
                               c10::IntArrayRef pad, std::string_view mode) {
  const PadMode pad_mode = parse_pad_mode(mode);
  const PadGeometry g = pad_backward_geometry(grad_output.sizes(), input_size, pad, pad_mode);
  if (g.ndim == 0) return grad_output.clone(at::MemoryFormat::Contiguous);
  at::Tensor grad_input =
      empty_with_huge_pages(input_size, grad_output.options(), grad_output.nbytes());
  if (grad_output.numel() == 0) return grad_input.zero_();  // nothing flows back
  const at::Tensor grad = grad_output.contiguous();
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad.scalar_type(), "_pad_nd_backward", [&] {
        pad_backward_rows<scalar_t>(grad.const_data_ptr<scalar_t>(),
                                    grad_input.mutable_data_ptr<scalar_t>(), g, pad_mode);
      });
  return grad_input;
}

}  // namespace
}  // namespace ndops

TORCH_LIBRARY_IMPL(ndops, CPU, m) {
  m.impl("pad_nd", &ndops::pad_nd_cpu);
  m.impl("_pad_nd_backward", &ndops::pad_nd_backward_cpu);
}
