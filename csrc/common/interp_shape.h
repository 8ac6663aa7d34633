// Host side of interpolate_nd, shared by the CPU and CUDA launchers: the mode string, the
// per-dim geometry of a call, the checks that make common/interp.h's maps valid, and the
// launchers' common path (interpolate_nd_host, interpolate_nd_backward_host). The Python
// wrapper (ndops/functional/interpolate.py) checks the same rules first, with friendlier
// messages; these are the second line of defence for direct torch.ops calls.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "common/interp.h"

namespace ndops {

inline InterpMode parse_interp_mode(std::string_view mode) {
  if (mode == "nearest") return InterpMode::kNearest;
  if (mode == "nearest-exact") return InterpMode::kNearestExact;
  TORCH_CHECK(mode == "linear", "ndops::interpolate_nd: mode must be 'nearest', ",
              "'nearest-exact' or 'linear' ('area' runs adaptive_avg_pool_nd), got '", mode,
              "'");
  return InterpMode::kLinear;
}

// The trailing ndim dims of a tensor are interpolated; the leading ones index independent
// "planes" (batch and channels).
struct InterpGeometry {
  int ndim = 0;
  int64_t planes = 1;
  std::vector<int64_t> in_sizes, out_sizes;
  std::vector<double> scales;  // the user's scale factors, or -1: none (the ratio is in/out)
  InterpMode mode = InterpMode::kNearest;
  bool align_corners = false;
};

inline InterpGeometry interp_geometry(c10::IntArrayRef input_sizes,
                                      c10::IntArrayRef output_size,
                                      c10::ArrayRef<double> scales, InterpMode mode,
                                      bool align_corners) {
  InterpGeometry g;
  g.mode = mode;
  g.align_corners = align_corners && mode == InterpMode::kLinear;
  g.ndim = static_cast<int>(output_size.size());
  const int64_t rank = static_cast<int64_t>(input_sizes.size());
  TORCH_CHECK(g.ndim >= 1 && g.ndim <= rank, "ndops::interpolate_nd: output_size must have ",
              "between 1 and input.dim() = ", rank, " entries, got ", output_size);
  TORCH_CHECK(scales.empty() || scales.size() == output_size.size(), "ndops::interpolate_nd: ",
              "scales must have one entry per interpolated dim (", g.ndim, "), got ",
              scales.size());
  for (int64_t i = 0; i < rank - g.ndim; ++i) g.planes *= input_sizes[i];
  for (int d = 0; d < g.ndim; ++d) {
    const int64_t in = input_sizes[rank - g.ndim + d], out = output_size[d];
    TORCH_CHECK(in > 0 && out > 0, "ndops::interpolate_nd: interpolated sizes must be > 0, ",
                "got input ", in, " -> output ", out, " in dim ", rank - g.ndim + d);
    g.in_sizes.push_back(in);
    g.out_sizes.push_back(out);
    g.scales.push_back(scales.empty() ? -1.0 : scales[d]);
  }
  return g;
}

// The interpolated tensor's sizes: the leading dims of input_sizes, then g.out_sizes.
inline std::vector<int64_t> interp_output_sizes(c10::IntArrayRef input_sizes,
                                                const InterpGeometry& g) {
  std::vector<int64_t> sizes(input_sizes.begin(), input_sizes.end() - g.ndim);
  sizes.insert(sizes.end(), g.out_sizes.begin(), g.out_sizes.end());
  return sizes;
}

// Whether t (B, C, *spatial), ndim spatial dims, is laid out channels-last (C fastest) and not
// also contiguous. Such a tensor is resampled as the contiguous (B, *spatial, C) with the
// channel dim kept as an extra, unchanged last dim, and its result is channels-last too.
inline bool interp_channels_last(const at::Tensor& t, int64_t ndim) {
  return t.dim() == ndim + 2 && !t.is_contiguous() && t.movedim(1, -1).is_contiguous();
}

// The user's scale factors, or none (empty).
inline std::vector<double> interp_scale_list(std::optional<c10::ArrayRef<double>> scales) {
  return scales ? std::vector<double>(scales->begin(), scales->end()) : std::vector<double>{};
}

inline void check_interp_dtype(const at::Tensor& t, bool allow_byte, const char* op,
                               const char* name) {
  const at::ScalarType type = t.scalar_type();
  TORCH_CHECK(type == at::kFloat || type == at::kDouble || type == at::kBFloat16 ||
                  type == at::kHalf || (allow_byte && type == at::kByte),
              "ndops::", op, ": ", name, " must be float16, bfloat16, float32 or float64",
              allow_byte ? " (or uint8 for the nearest modes)" : "", ", got ", type);
}

// The channels-last form of a call: the channel dim appended as an unchanged last dim.
inline std::vector<int64_t> interp_with_channels(c10::IntArrayRef sizes, int64_t channels) {
  std::vector<int64_t> out(sizes.begin(), sizes.end());
  out.push_back(channels);
  return out;
}

// interpolate_nd on either device (each registers interpolate_nd_host<its resample>): the
// checks, then resample(in, geometry) -> output on the contiguous input, or, for a
// channels-last input, on its contiguous (B, *spatial, C) form with C an extra, unchanged last
// dim (the result moved back, channels-last too).
template <auto resample>
at::Tensor interpolate_nd_host(const at::Tensor& input, c10::IntArrayRef output_size,
                               std::optional<c10::ArrayRef<double>> scales,
                               std::string_view mode, bool align_corners, bool antialias) {
  TORCH_CHECK(!antialias, "ndops::interpolate_nd: antialias=True has no compiled kernel; ",
              "ndops.interpolate_nd runs its fallback for it");
  const InterpMode interp_mode = parse_interp_mode(mode);
  std::vector<double> scale = interp_scale_list(scales);
  const InterpGeometry g = interp_geometry(input.sizes(), output_size, scale, interp_mode,
                                           align_corners);
  check_interp_dtype(input, interp_mode != InterpMode::kLinear, "interpolate_nd", "input");
  if (!interp_channels_last(input, g.ndim)) return resample(input.contiguous(), g);
  const at::Tensor moved = input.movedim(1, -1);  // (B, *spatial, C), contiguous
  if (!scale.empty()) scale.push_back(-1.0);
  const std::vector<int64_t> sizes = interp_with_channels(output_size, input.size(1));
  return resample(moved, interp_geometry(moved.sizes(), sizes, scale, interp_mode,
                                         align_corners))
      .movedim(-1, 1);
}

// _interpolate_nd_backward on either device (registered likewise): the checks (grad_output
// must have the shape interpolating input_size gives), then
// resample_backward(grad, input_size, geometry) -> grad_input as interpolate_nd_host runs the
// forward (a channels-last grad_output gives a channels-last grad_input).
template <auto resample_backward>
at::Tensor interpolate_nd_backward_host(const at::Tensor& grad_output,
                                        c10::IntArrayRef output_size,
                                        c10::IntArrayRef input_size,
                                        std::optional<c10::ArrayRef<double>> scales,
                                        std::string_view mode, bool align_corners) {
  const InterpMode interp_mode = parse_interp_mode(mode);
  std::vector<double> scale = interp_scale_list(scales);
  const InterpGeometry g = interp_geometry(input_size, output_size, scale, interp_mode,
                                           align_corners);
  const std::vector<int64_t> expected = interp_output_sizes(input_size, g);
  TORCH_CHECK(grad_output.sizes() == c10::IntArrayRef(expected), "ndops::",
              "_interpolate_nd_backward: grad_output has shape ", grad_output.sizes(),
              " but interpolating input_size ", input_size, " to output_size ", output_size,
              " gives ", c10::IntArrayRef(expected));
  check_interp_dtype(grad_output, false, "_interpolate_nd_backward", "grad_output");
  if (!interp_channels_last(grad_output, g.ndim)) {
    return resample_backward(grad_output.contiguous(), input_size, g);
  }
  const at::Tensor moved = grad_output.movedim(1, -1);
  std::vector<int64_t> moved_input(input_size.begin(), input_size.end());
  std::rotate(moved_input.begin() + 1, moved_input.begin() + 2, moved_input.end());
  if (!scale.empty()) scale.push_back(-1.0);
  const std::vector<int64_t> sizes = interp_with_channels(output_size, input_size[1]);
  return resample_backward(moved, moved_input,
                           interp_geometry(moved_input, sizes, scale, interp_mode,
                                           align_corners))
      .movedim(-1, 1);
}

// The taps of every output coordinate of dim d. T: the type torch computes source
// coordinates in (see common/interp.h).
template <typename T>
inline std::vector<Tap<T>> tabulate_taps(const InterpGeometry& g, int d) {
  const int64_t in = g.in_sizes[d], out = g.out_sizes[d];
  const T ratio = interp_ratio<T>(in, out, g.align_corners, g.scales[d]);
  std::vector<Tap<T>> taps(out);
  for (int64_t o = 0; o < out; ++o) {
    taps[o] = interp_taps<T>(g.mode, ratio, o, in, out, g.align_corners);
  }
  return taps;
}

}  // namespace ndops
