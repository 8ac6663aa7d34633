// CPU kernels of unfold_nd and fold_nd (schemas: csrc/ndops.cpp; per-dim index math:
// csrc/common/fold_index.h). N is a runtime value. The two ops are each other's adjoint, so
// each is the other's backward (ndops/_ops/fold.py).
//
// Columns (B, C * taps, L) are rows of the last dim's block positions; the image
// (B, C, *size) is rows of its last dim. Both kernels work on tiles of the last two dims
// (an input of one spatial dim gets a leading dim of size 1):
// - unfold: per run of column rows that differ in the second-to-last block position alone,
//   map the outer taps and blocks to the image once, then per row copy the last dim's
//   in-range blocks (a plain copy at stride 1) and zero the rest;
// - fold: per tile of image rows, gather (sum) every column that adds into it. Each task owns
//   whole image rows, so no two threads write one element, and each element sums its terms
//   in increasing tap order (deterministic; torch's order, bit for bit at N = 2).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "common/fold_shape.h"
#include "common/nd_index.h"
#include "cpu/huge_pages.h"

namespace ndops {
namespace {

// Rows per parallel task: enough that a task moves at least ~32K elements.
int64_t rows_per_task(int64_t work_per_row) {
  return std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(work_per_row, 1));
}

// Image elements fold sums at a time per task (a tile of the last two dims that stays in L2).
constexpr int64_t kTileElements = int64_t{1} << 15;

int64_t product(const std::vector<int64_t>& sizes) {
  int64_t p = 1;
  for (const int64_t s : sizes) p *= s;
  return p;
}

// With one spatial dim, a leading dim of size 1 (one tap, one block) lets both kernels work
// on tiles of the last two dims; neither layout changes.
FoldGeometry at_least_two_dims(FoldGeometry g) {
  if (g.ndim >= 2) return g;
  for (auto* v : {&g.size, &g.kernel, &g.dilation, &g.stride, &g.blocks}) v->insert(v->begin(), 1);
  g.padding.insert(g.padding.begin(), 0);
  g.ndim = 2;
  return g;
}

// The in-range blocks of every tap of dim d.
std::vector<BlockRange> tap_ranges(const FoldGeometry& g, int d) {
  std::vector<BlockRange> ranges(g.kernel[d]);
  for (int64_t t = 0; t < g.kernel[d]; ++t) {
    ranges[t] = tap_block_range(t, g.size[d], g.blocks[d], g.dilation[d], g.padding[d],
                                g.stride[d]);
  }
  return ranges;
}

int64_t first_coordinate(const FoldGeometry& g, int d, int64_t t) {
  return block_tap_coordinate(0, t, g.dilation[d], g.padding[d], g.stride[d]);
}

// Column rows are (plane, t_0, ..., t_{N-1}, l_0, ..., l_{N-2}). A task copies runs of
// consecutive rows that differ in l_{N-2} alone, reading image rows s_{N-2} apart, so the
// outer dims are mapped once per run.
template <typename scalar_t>
void unfold_rows(const scalar_t* image, scalar_t* columns, int64_t planes,
                 const FoldGeometry& g) {
  const int n = g.ndim, row_dim = n - 2, last = n - 1;
  std::vector<int64_t> image_strides(n);
  contiguous_strides(g.size.data(), n, image_strides.data());
  const int64_t image_plane = g.image_plane();
  const int64_t row_length = g.blocks[last], s = g.stride[last];
  const auto row_ranges = tap_ranges(g, row_dim), last_ranges = tap_ranges(g, last);
  std::vector<int64_t> rows{planes};
  rows.insert(rows.end(), g.kernel.begin(), g.kernel.end());
  rows.insert(rows.end(), g.blocks.begin(), g.blocks.end() - 1);
  const int rank = static_cast<int>(rows.size());

  at::parallel_for(0, product(rows), rows_per_task(row_length), [&](int64_t begin, int64_t end) {
    std::vector<int64_t> coords(rank);  // of the first row of the current run
    unravel_index(begin, rows.data(), rank, coords.data());
    for (int64_t row = begin; row < end;) {
      const int64_t* taps = coords.data() + 1;
      const int64_t* blocks = coords.data() + 1 + n;
      int64_t offset = coords[0] * image_plane;
      bool inside = true;  // false: a tap of the outer dims falls in the padding
      for (int d = 0; d < row_dim; ++d) {
        const int64_t x = block_tap_coordinate(blocks[d], taps[d], g.dilation[d], g.padding[d],
                                               g.stride[d]);
        inside = inside && x >= 0 && x < g.size[d];
        offset += x * image_strides[d];
      }
      const BlockRange rows_in = inside ? row_ranges[taps[row_dim]] : BlockRange{0, 0};
      const BlockRange r = last_ranges[taps[last]];
      const int64_t first_row = first_coordinate(g, row_dim, taps[row_dim]);
      const int64_t first = first_coordinate(g, last, taps[last]);  // block b reads b * s + first
      const int64_t run_end = std::min(end, row + g.blocks[row_dim] - blocks[row_dim]);
      for (int64_t l = blocks[row_dim]; row < run_end; ++row, ++l) {
        scalar_t* out = columns + row * row_length;
        if (l < rows_in.begin || l >= rows_in.end || r.begin == r.end) {
          std::fill(out, out + row_length, scalar_t(0));
          continue;
        }
        const scalar_t* in =
            image + offset + (l * g.stride[row_dim] + first_row) * image_strides[row_dim];
        if (r.begin > 0) std::fill(out, out + r.begin, scalar_t(0));
        if (r.end < row_length) std::fill(out + r.end, out + row_length, scalar_t(0));
        // Plain loops (short rows are common: a libc call per row would cost more).
        if (s == 1) {
          for (int64_t b = r.begin; b < r.end; ++b) out[b] = in[b + first];
        } else {
          for (int64_t b = r.begin; b < r.end; ++b) out[b] = in[b * s + first];
        }
      }
      coords[rank - 1] = 0;  // the next run: the next (plane, taps, l_0, ..., l_{N-3})
      advance_index(coords.data(), rows.data(), rank - 1);
    }
  });
}

// The inverse map of one outer dim, in compressed rows: the (tap, block) pairs that add into
// image coordinate x are entries [begin[x], begin[x + 1]) of offsets, each stored as its
// offset in a column plane (t * tap_stride + l * block_stride), in increasing tap order.
struct Feeds {
  std::vector<int64_t> begin, offsets;
};

Feeds feeds_of_dim(const FoldGeometry& g, int d, int64_t tap_stride, int64_t block_stride) {
  Feeds feeds;
  feeds.begin.push_back(0);
  for (int64_t x = 0; x < g.size[d]; ++x) {
    for (int64_t t = 0; t < g.kernel[d]; ++t) {
      const int64_t l = block_of_tap(x, t, g.blocks[d], g.dilation[d], g.padding[d],
                                     g.stride[d]);
      if (l >= 0) feeds.offsets.push_back(t * tap_stride + l * block_stride);
    }
    feeds.begin.push_back(static_cast<int64_t>(feeds.offsets.size()));
  }
  return feeds;
}

// Image rows are (plane, x_0, ..., x_{N-2}). A task sums a tile of consecutive rows that
// differ in x_{N-2} alone (at most kTileElements): for every combination of one (tap, block)
// pair per outer dim, every tap (t_{N-2}, t_{N-1}) adds its 2-D block of columns, read in one
// pass, into the tile. Combinations come in increasing tap order, and so do the terms of
// every element.
template <typename scalar_t>
void fold_rows(const scalar_t* columns, scalar_t* image, int64_t planes, const FoldGeometry& g) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr bool kInPlace = std::is_same_v<acc_t, scalar_t>;  // else via an acc_t tile
  const int n = g.ndim, row_dim = n - 2, last = n - 1;
  const int64_t row_length = g.size[last], s = g.stride[last];
  const int64_t column_plane = g.taps * g.length;
  // A column plane is (t_0, ..., t_{N-1}, l_0, ..., l_{N-1}) row-major.
  std::vector<int64_t> tap_strides(n), block_strides(n);
  contiguous_strides(g.kernel.data(), n, tap_strides.data());
  contiguous_strides(g.blocks.data(), n, block_strides.data());
  std::vector<Feeds> feeds;
  for (int d = 0; d < row_dim; ++d) {
    feeds.push_back(feeds_of_dim(g, d, tap_strides[d] * g.length, block_strides[d]));
  }
  const auto last_ranges = tap_ranges(g, last);
  std::vector<int64_t> rows{planes};
  rows.insert(rows.end(), g.size.begin(), g.size.end() - 1);
  const int rank = static_cast<int>(rows.size());
  const int64_t max_run = std::min(g.size[row_dim],
                                   std::max<int64_t>(1, kTileElements / row_length));
  const int64_t work_per_row = row_length + column_plane / (g.image_plane() / row_length);

  at::parallel_for(0, product(rows), rows_per_task(work_per_row), [&](int64_t begin,
                                                                     int64_t end) {
    std::vector<int64_t> coords(rank), first(row_dim), count(row_dim), pick(row_dim);
    std::vector<acc_t> buffer(kInPlace ? 0 : max_run * row_length);
    unravel_index(begin, rows.data(), rank, coords.data());  // of the current tile's first row
    for (int64_t row = begin; row < end;) {
      const int64_t x_lo = coords[rank - 1];  // the tile holds rows [x_lo, x_lo + run)
      const int64_t run = std::min({end - row, g.size[row_dim] - x_lo, max_run});
      scalar_t* out = image + row * row_length;
      acc_t* acc = nullptr;
      if constexpr (kInPlace) {
        acc = out;
      } else {
        acc = buffer.data();
      }
      std::fill(acc, acc + run * row_length, acc_t(0));
      bool fed = true;  // false: no pair of some outer dim adds into this tile
      for (int d = 0; d < row_dim; ++d) {
        const int64_t x = coords[1 + d];
        first[d] = feeds[d].begin[x];
        count[d] = feeds[d].begin[x + 1] - first[d];
        fed = fed && count[d] > 0;
      }
      std::fill(pick.begin(), pick.end(), 0);
      while (fed) {
        int64_t offset = coords[0] * column_plane;
        for (int d = 0; d < row_dim; ++d) offset += feeds[d].offsets[first[d] + pick[d]];
        for (int64_t t_row = 0; t_row < g.kernel[row_dim]; ++t_row) {
          // The blocks whose tap t_row lands in the tile (the window [x_lo, x_lo + run)).
          const BlockRange rows_in =
              tap_block_range(t_row, run, g.blocks[row_dim], g.dilation[row_dim],
                              g.padding[row_dim] + x_lo, g.stride[row_dim]);
          const int64_t first_row = first_coordinate(g, row_dim, t_row) - x_lo;
          for (int64_t t = 0; t < g.kernel[last]; ++t) {
            const BlockRange r = last_ranges[t];
            const int64_t x0 = first_coordinate(g, last, t);  // block b adds into b * s + x0
            const scalar_t* tap_columns =
                columns + offset + (t_row * tap_strides[row_dim] + t) * g.length;
            for (int64_t l = rows_in.begin; l < rows_in.end; ++l) {
              acc_t* target = acc + (l * g.stride[row_dim] + first_row) * row_length;
              const scalar_t* in = tap_columns + l * block_strides[row_dim];
              if (s == 1) {
                for (int64_t b = r.begin; b < r.end; ++b) {
                  target[b + x0] += static_cast<acc_t>(in[b]);
                }
              } else {
                for (int64_t b = r.begin; b < r.end; ++b) {
                  target[b * s + x0] += static_cast<acc_t>(in[b]);
                }
              }
            }
          }
        }
        fed = advance_index(pick.data(), count.data(), row_dim);
      }
      if constexpr (!kInPlace) {
        for (int64_t i = 0; i < run * row_length; ++i) out[i] = static_cast<scalar_t>(acc[i]);
      }
      row += run;
      coords[rank - 1] += run;
      if (coords[rank - 1] == g.size[row_dim]) {  // the next (plane, x_0, ..., x_{N-3})
        coords[rank - 1] = 0;
        advance_index(coords.data(), rows.data(), rank - 1);
      }
    }
  });
}

at::Tensor unfold_nd_cpu(const at::Tensor& input, c10::IntArrayRef kernel_size,
                         c10::IntArrayRef dilation, c10::IntArrayRef padding,
                         c10::IntArrayRef stride) {
  const FoldGeometry g = unfold_geometry(input.sizes(), kernel_size, dilation, padding, stride);
  at::Tensor out =
      empty_with_huge_pages(unfold_output_sizes(input.sizes(), g), input.options(), input.nbytes());
  if (out.numel() == 0) return out;
  const at::Tensor in = input.contiguous();
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES_AND2(
      at::kHalf, at::kBFloat16, in.scalar_type(), "unfold_nd", [&] {
        unfold_rows<scalar_t>(in.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
                              input.size(0) * input.size(1), at_least_two_dims(g));
      });
  return out;
}

at::Tensor fold_nd_cpu(const at::Tensor& input, c10::IntArrayRef output_size,
                       c10::IntArrayRef kernel_size, c10::IntArrayRef dilation,
                       c10::IntArrayRef padding, c10::IntArrayRef stride) {
  const FoldGeometry g =
      fold_nd_geometry(input.sizes(), output_size, kernel_size, dilation, padding, stride);
  at::Tensor out =
      empty_with_huge_pages(fold_output_sizes(input.sizes(), g), input.options(), input.nbytes());
  if (out.numel() == 0) return out;
  const at::Tensor in = input.contiguous();
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES_AND2(
      at::kHalf, at::kBFloat16, in.scalar_type(), "fold_nd", [&] {
        fold_rows<scalar_t>(in.const_data_ptr<scalar_t>(), out.mutable_data_ptr<scalar_t>(),
                            out.size(0) * out.size(1), at_least_two_dims(g));
      });
  return out;
}

}  // namespace
}  // namespace ndops

TORCH_LIBRARY_IMPL(ndops, CPU, m) {
  m.impl("unfold_nd", &ndops::unfold_nd_cpu);
  m.impl("fold_nd", &ndops::fold_nd_cpu);
}
