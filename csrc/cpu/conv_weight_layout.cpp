// The weight moves of csrc/cpu/conv_weight_layout.h. Measured (2 threads, B1 C64->128 6^4
// k3 s2): a permute + contiguous() into (tap, channel) order, then the native conv's own
// contiguous(channels_last), took two strided TensorIterator copies (~1.5 ms each, half of
// the forward); one pass of 2-D plane transposes straight into the channels-last layout
// replaces both.
#include "cpu/conv_weight_layout.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <c10/util/accumulate.h>

#include <vector>

#include "cpu/conv_gather.h"
#include "cpu/conv_planes.h"

namespace ndops {
namespace {

// Strides of a weight indexed as (output channel, input channel within the group, leading
// tap, inner kernel voxel).
struct WeightStrides {
  int64_t out = 0, channel = 0, tap = 0, voxel = 0;
};

struct WeightExtent {
  int64_t out = 0, channels = 0, taps = 0, voxels = 0;
};

// dst = src element by element, both addressed through their WeightStrides: per (output
// channel, tap), one plane (voxels x channels) of copy_plane (register transposes where one
// side holds the channels innermost, the other the voxels).
void move_weight(const at::Tensor& src, const WeightStrides& s, at::Tensor& dst,
                 const WeightStrides& d, const WeightExtent& e) {
  if (!src.is_cpu()) {
    const std::vector<int64_t> sizes{e.out, e.channels, e.taps, e.voxels};
    dst.as_strided(sizes, {d.out, d.channel, d.tap, d.voxel})
        .copy_(src.as_strided(sizes, {s.out, s.channel, s.tap, s.voxel}));
    return;
  }
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES_AND2(
      at::kHalf, at::kBFloat16, src.scalar_type(), "conv_nd_weight_layout", [&] {
        const scalar_t* in = src.const_data_ptr<scalar_t>();
        scalar_t* out = dst.mutable_data_ptr<scalar_t>();
        at::parallel_for(0, e.out * e.taps, 1, [&](int64_t begin, int64_t end) {
          for (int64_t task = begin; task < end; ++task) {
            const int64_t o = task / e.taps, t = task % e.taps;
            copy_plane(out + o * d.out + t * d.tap, d.voxel, d.channel,
                       in + o * s.out + t * s.tap, s.voxel, s.channel, e.voxels, e.channels);
          }
        });
      });
}

}  // namespace

at::Tensor gathered_weight(const at::Tensor& weight_in, int64_t taps,
                           c10::IntArrayRef inner_kernel, at::MemoryFormat format) {
  RECORD_FUNCTION("ndops::conv_nd::gathered_weight", {});
  const at::Tensor weight = weight_in.contiguous();
  const WeightExtent e{weight.size(0), weight.size(1), taps, c10::multiply_integers(inner_kernel)};
  std::vector<int64_t> sizes{e.out, taps * e.channels};
  sizes.insert(sizes.end(), inner_kernel.begin(), inner_kernel.end());
  at::Tensor packed = at::empty(sizes, weight.options().memory_format(format));
  const CollapsedStrides p = collapsed_or_fail(packed, 0, "the gathered weight");
  move_weight(weight, {e.channels * taps * e.voxels, taps * e.voxels, e.voxels, 1}, packed,
              {p.batch, p.channel, e.channels * p.channel, p.voxel}, e);
  return packed;
}

at::Tensor ungathered_weight(const at::Tensor& gathered_grad, c10::IntArrayRef weight_sizes,
                             int64_t taps) {
  RECORD_FUNCTION("ndops::conv_nd::ungathered_weight", {});
  const at::Tensor grad = collapse_inner(gathered_grad, 0).has_value()
                              ? gathered_grad
                              : gathered_grad.contiguous();
  const CollapsedStrides g = *collapse_inner(grad, 0);
  at::Tensor weight = at::empty(weight_sizes, grad.options());
  const WeightExtent e{weight.size(0), weight.size(1), taps,
                       c10::multiply_integers(grad.sizes().slice(2))};
  move_weight(grad, {g.batch, g.channel, e.channels * g.channel, g.voxel}, weight,
              {e.channels * taps * e.voxels, taps * e.voxels, e.voxels, 1}, e);
  return weight;
}

}  // namespace ndops
