// Host side of pad_nd, shared by the CPU and CUDA launchers: the mode string, the pad list in
// torch's layout turned into per-dim geometry, the checks that make pad_index.h's maps valid,
// the fill value and the output. The Python wrapper (ndops/functional/pad.py) checks the same
// rules first, with friendlier messages; these are the second line of defence for direct
// torch.ops calls.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/Scalar.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <string_view>
#include <vector>

#include "common/pad_index.h"

namespace ndops {

inline PadMode parse_pad_mode(std::string_view mode) {
  if (mode == "constant") return PadMode::kConstant;
  if (mode == "reflect") return PadMode::kReflect;
  if (mode == "replicate") return PadMode::kReplicate;
  TORCH_CHECK(mode == "circular", "ndops::pad_nd: mode must be 'constant', 'reflect', ",
              "'replicate' or 'circular', got '", mode, "'");
  return PadMode::kCircular;
}

// The trailing ndim dims of the input, in input order (first padded dim first), with their
// pads; lead is the product of the unpadded leading dims.
struct PadGeometry {
  int ndim = 0;
  int64_t lead = 1;
  std::vector<int64_t> in_sizes, out_sizes, pad_left, pad_right;
};

inline PadGeometry pad_geometry(c10::IntArrayRef input_sizes, c10::IntArrayRef pad,
                                PadMode mode) {
  TORCH_CHECK(pad.size() % 2 == 0, "ndops::pad_nd: pad must have an even length, got ",
              pad.size());
  const int64_t rank = static_cast<int64_t>(input_sizes.size());
  const int64_t ndim = static_cast<int64_t>(pad.size()) / 2;
  TORCH_CHECK(ndim <= rank, "ndops::pad_nd: pad has ", ndim, " (left, right) pairs but the ",
              "input has only ", rank, " dims");
  PadGeometry g;
  g.ndim = static_cast<int>(ndim);
  for (int64_t i = 0; i < rank - ndim; ++i) g.lead *= input_sizes[i];
  for (int64_t d = 0; d < ndim; ++d) {
    // torch's layout lists the last dim first: pair (ndim - 1 - d) pads padded dim d.
    const int64_t left = pad[2 * (ndim - 1 - d)], right = pad[2 * (ndim - 1 - d) + 1];
    const int64_t size = input_sizes[rank - ndim + d];
    const int64_t out = padded_size(size, left, right);
    const int64_t cropped = size + std::min<int64_t>(left, 0) + std::min<int64_t>(right, 0);
    switch (mode) {
      case PadMode::kConstant:
        TORCH_CHECK(cropped >= 0, "ndops::pad_nd: negative pad (", left, ", ", right,
                    ") crops more than the ", size, " elements of dim ", rank - ndim + d);
        break;
      case PadMode::kReflect:
        TORCH_CHECK(left < size && right < size && out >= 0, "ndops::pad_nd: reflect needs ",
                    "each pad < the size of its dim and a non-negative output size, got pad (",
                    left, ", ", right, ") for size ", size);
        break;
      case PadMode::kReplicate:
        TORCH_CHECK(size >= 1 && out >= 0, "ndops::pad_nd: replicate needs a non-empty input ",
                    "and a non-negative output size along dim ", rank - ndim + d,
                    ", got sizes ", size, " -> ", out);
        break;
      case PadMode::kCircular:
        TORCH_CHECK(left <= size && right <= size && out >= 0 &&
                        (out == 0 || (left <= cropped && right <= cropped)),
                    "ndops::pad_nd: circular pad (", left, ", ", right, ") for dim ",
                    rank - ndim + d, " of size ", size, " (", cropped, " after cropping) ",
                    "must wrap around at most once and leave a non-negative output size");
        break;
    }
    g.in_sizes.push_back(size);
    g.out_sizes.push_back(out);
    g.pad_left.push_back(left);
    g.pad_right.push_back(right);
  }
  return g;
}

// source[d][o]: the input coordinate that output coordinate o of padded dim d copies (-1: fill).
inline std::vector<std::vector<int64_t>> pad_source_tables(const PadGeometry& g, PadMode mode) {
  std::vector<std::vector<int64_t>> tables(g.ndim);
  for (int d = 0; d < g.ndim; ++d) {
    tables[d].resize(g.out_sizes[d]);
    for (int64_t o = 0; o < g.out_sizes[d]; ++o) {
      tables[d][o] = pad_source_index(mode, o, g.in_sizes[d], g.pad_left[d], g.pad_right[d]);
    }
  }
  return tables;
}

// The inverse of one dim's map, in compressed rows: the output coordinates that copy input
// coordinate j are entries [begin[j], begin[j + 1]) of offsets, each stored as o * out_stride
// (its offset in grad_output). The backward kernels gather through it.
struct PadSinks {
  std::vector<int64_t> begin, offsets;
};

inline PadSinks invert_pad_source(const std::vector<int64_t>& source, int64_t in_size,
                                  int64_t out_stride) {
  PadSinks sinks;
  sinks.begin.assign(in_size + 1, 0);
  for (const int64_t s : source) {
    if (s >= 0) ++sinks.begin[s + 1];
  }
  for (int64_t j = 0; j < in_size; ++j) sinks.begin[j + 1] += sinks.begin[j];
  sinks.offsets.resize(sinks.begin[in_size]);
  std::vector<int64_t> cursor(sinks.begin.begin(), sinks.begin.end() - 1);
  for (int64_t o = 0; o < static_cast<int64_t>(source.size()); ++o) {
    if (source[o] >= 0) sinks.offsets[cursor[source[o]]++] = o * out_stride;
  }
  return sinks;
}

// Sizes of the padded tensor: the leading dims unchanged, the padded ones grown or cropped.
inline std::vector<int64_t> padded_sizes(c10::IntArrayRef input_sizes, const PadGeometry& g) {
  std::vector<int64_t> sizes(input_sizes.begin(), input_sizes.end() - g.ndim);
  sizes.insert(sizes.end(), g.out_sizes.begin(), g.out_sizes.end());
  return sizes;
}

// pad_nd's output, uninitialized.
inline at::Tensor empty_padded(const at::Tensor& input, const PadGeometry& g) {
  return at::empty(padded_sizes(input.sizes(), g), input.options());
}

// pad_nd's fill value in the input's dtype, converted like Tensor.fill_ (an error if the value
// overflows the dtype); 0 for the modes that only copy.
template <typename scalar_t>
scalar_t pad_fill_value(PadMode mode, double value) {
  return mode == PadMode::kConstant ? c10::Scalar(value).to<scalar_t>() : scalar_t(0);
}

// _pad_nd_backward's geometry, with grad_output checked to have the padded input_size.
inline PadGeometry pad_backward_geometry(c10::IntArrayRef grad_output_sizes,
                                         c10::IntArrayRef input_size, c10::IntArrayRef pad,
                                         PadMode mode) {
  const PadGeometry g = pad_geometry(input_size, pad, mode);
  const std::vector<int64_t> expected = padded_sizes(input_size, g);
  TORCH_CHECK(grad_output_sizes == c10::IntArrayRef(expected), "ndops::_pad_nd_backward: ",
              "grad_output has shape ", grad_output_sizes, " but padding input_size ",
              input_size, " gives ", c10::IntArrayRef(expected));
  return g;
}

}  // namespace ndops
