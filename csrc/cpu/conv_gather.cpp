// CPU memory passes of conv_nd (declared in csrc/cpu/conv_gather.h; index math in
// csrc/common/conv_gather.h). The entry points hand CUDA tensors to csrc/cuda/conv_gather.cu.
//
// Every pass moves 2-D planes (voxels x channels) between a (B, C, *spatial) tensor, whose
// inner dims collapse into one voxel stride (channels-first or channels-last), and the
// channels-last buffers of the native conv. Work is split into tiles of voxels small enough
// that a tile of the channels-last side stays in L1 while the other side is streamed.
#include "cpu/conv_gather.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <type_traits>

#include "common/conv_gather.h"
#include "common/nd_index.h"
#include "cpu/conv_planes.h"

#if defined(NDOPS_WITH_CUDA)
#include "cuda/conv_passes.h"
#endif

namespace ndops {
namespace {

int64_t product(c10::IntArrayRef sizes) {
  int64_t p = 1;
  for (const int64_t s : sizes) p *= s;
  return p;
}

// The leading coordinates' offsets in `input` of every tap of leading output position t.
void tap_offsets(const ConvPlan& plan, const std::vector<int64_t>& lead_strides, int64_t t,
                 std::vector<int64_t>& out_coords, std::vector<int64_t>& tap_coords,
                 std::vector<int64_t>& offsets) {
  const int lead = plan.lead;
  unravel_index(t, plan.out_sizes.data(), lead, out_coords.data());
  std::fill(tap_coords.begin(), tap_coords.end(), 0);
  for (int64_t k = 0; k < plan.taps; ++k) {
    offsets[k] = lead_source_offset(out_coords.data(), tap_coords.data(), plan.kernel.data(),
                                    plan.source.data(), plan.source_begin.data(),
                                    lead_strides.data(), lead);
    advance_index(tap_coords.data(), plan.kernel.data(), lead);
  }
}

// The (leading output position t, linear tap k) pairs that read each leading input position,
// from the per-dim inverses of plan.source (conv_readers; the walk: for_each_lead_reader,
// which the CUDA scatter shares). With pad_inner it also holds the inner copies' inverse.
class LeadReaders {
 public:
  explicit LeadReaders(const ConvPlan& plan) : plan_(plan), readers_(conv_readers(plan)) {}

  // Per-thread scratch of for_each; coords holds the unravelled input position afterwards.
  struct Scratch {
    explicit Scratch(int lead) : coords(lead), walk(3 * lead) {}
    std::vector<int64_t> coords, walk;
  };

  // f(t, k) for every reader of input position `s` (linear) with first <= t < first + count,
  // in a fixed order.
  template <typename F>
  void for_each(int64_t s, int64_t first, int64_t count, Scratch& w, const F& f) const {
    unravel_index(s, plan_.in_sizes.data(), plan_.lead, w.coords.data());
    for_each_lead_reader(w.coords.data(), plan_.lead, readers_.table.data(),
                         readers_.lead_at.data(), plan_.kernel.data(), plan_.out_sizes.data(),
                         first, count, w.walk.data(), f);
  }

  // The gathered voxels that copy inner input voxel v (pad_inner): [begin, end) of copy().
  int64_t copies_begin(int64_t v) const { return readers_.table[readers_.copies_at + v]; }
  int64_t copies_end(int64_t v) const { return readers_.table[readers_.copies_at + v + 1]; }
  int64_t copy(int64_t i) const { return readers_.table[i]; }

 private:
  const ConvPlan& plan_;
  ConvReaders readers_;
};

// Output-major gather: per (entry, tile of gathered voxels), every tap's block. Used with
// pad_inner (the inner padding maps voxels one by one) and, with only_padding, to write the
// zeros of the leading dims' padding around gather_by_input.
template <typename scalar_t>
void gather_by_output(const scalar_t* in, const CollapsedStrides& is, const ConvPlan& plan,
                      int64_t first, int64_t count, scalar_t* out, bool only_padding) {
  const int64_t voxels = plan.gathered_voxels, taps = plan.taps, cg = plan.group_channels;
  const int64_t row = plan.gathered_channels();  // out is (B * count, voxels, row)
  const int64_t tile = voxel_tile(row, sizeof(scalar_t), voxels);
  const int64_t tiles = ceil_div(voxels, tile);
  at::parallel_for(0, plan.batch * count * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> out_coords(plan.lead), tap_coords(plan.lead), offsets(taps);
    int64_t position = -1;
    for (int64_t task = begin; task < end; ++task) {
      const int64_t entry = task / tiles, v0 = (task % tiles) * tile;
      const int64_t b = entry / count, nv = std::min(tile, voxels - v0);
      if (entry % count + first != position) {
        position = entry % count + first;
        tap_offsets(plan, is.lead, position, out_coords, tap_coords, offsets);
      }
      if (only_padding && *std::min_element(offsets.begin(), offsets.end()) >= 0) continue;
      scalar_t* dst = out + (entry * voxels + v0) * row;
      for (int64_t g = 0; g < plan.groups; ++g) {
        const scalar_t* src = in + b * is.batch + g * cg * is.channel;
        for (int64_t k = 0; k < taps; ++k) {
          scalar_t* run = dst + gathered_channel(g, k, taps, cg);
          if (offsets[k] < 0) {
            zero_plane(run, row, nv, cg);
          } else if (only_padding) {
            continue;
          } else if (plan.pad_inner) {
            gather_plane(run, row, src + offsets[k], plan.inner_source.data() + v0, is.voxel,
                         is.channel, nv, cg);
          } else {
            copy_plane(run, row, int64_t{1}, src + offsets[k] + v0 * is.voxel, is.voxel,
                       is.channel, nv, cg);
          }
        }
      }
    }
  });
}

// Input-major gather (inner dims unpadded): per (batch, leading input position, tile of
// voxels), the input tile is read (and transposed to channels-last) once, then copied into
// the block of every (position, tap) that reads it. Each block has one reader, so tasks write
// disjoint blocks; blocks read from zero padding are left to gather_by_output.
template <typename scalar_t>
void gather_by_input(const scalar_t* in, const CollapsedStrides& is, const ConvPlan& plan,
                     int64_t first, int64_t count, scalar_t* out) {
  const int64_t voxels = plan.inner_in_voxels, taps = plan.taps, cg = plan.group_channels;
  const int64_t channels = plan.in_channels, row = plan.gathered_channels();
  const int64_t tile = voxel_tile(channels, sizeof(scalar_t), voxels);
  const int64_t tiles = ceil_div(voxels, tile);
  const int64_t lead_in = product(c10::IntArrayRef(plan.in_sizes).slice(0, plan.lead));
  const LeadReaders readers(plan);
  at::parallel_for(0, plan.batch * lead_in * tiles, 1, [&](int64_t begin, int64_t end) {
    LeadReaders::Scratch work(plan.lead);
    std::vector<scalar_t> scratch(is.channel == 1 ? 0 : tile * channels);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / (lead_in * tiles), s = task / tiles % lead_in;
      const int64_t v0 = (task % tiles) * tile, nv = std::min(tile, voxels - v0);
      const scalar_t* src = nullptr;  // the tile, channels-last with voxel stride `stride`
      int64_t stride = channels;
      readers.for_each(s, first, count, work, [&](int64_t t, int64_t k) {
        if (src == nullptr) {
          const scalar_t* tile_in = in + b * is.batch + v0 * is.voxel +
                                    ravel_index(work.coords.data(), is.lead.data(), plan.lead);
          if (is.channel == 1) {
            src = tile_in;
            stride = is.voxel;
          } else {
            copy_plane(scratch.data(), channels, int64_t{1}, tile_in, is.voxel, is.channel, nv,
                       channels);
            src = scratch.data();
          }
        }
        scalar_t* dst = out + ((b * count + t - first) * voxels + v0) * row;
        for (int64_t g = 0; g < plan.groups; ++g) {
          copy_plane(dst + gathered_channel(g, k, taps, cg), row, int64_t{1}, src + g * cg,
                     stride, int64_t{1}, nv, cg);
        }
      });
    }
  });
}

// Adds one gathered voxel's channels of tap k (row) into a voxel's accumulators.
template <typename scalar_t, typename acc_t>
void add_voxel(acc_t* acc_row, const scalar_t* row, int64_t channel_stride, int64_t k,
               const ConvPlan& plan) {
  const int64_t cg = plan.group_channels;
  for (int64_t g = 0; g < plan.groups; ++g) {
    const scalar_t* run = row + gathered_channel(g, k, plan.taps, cg) * channel_stride;
    acc_t* acc_run = acc_row + g * cg;
    if (channel_stride == 1) {  // the native conv's channels-last gradient: a vector loop
      for (int64_t c = 0; c < cg; ++c) acc_run[c] += static_cast<acc_t>(run[c]);
    } else {
      for (int64_t c = 0; c < cg; ++c) {
        acc_run[c] += static_cast<acc_t>(run[c * channel_stride]);
      }
    }
  }
}

template <typename scalar_t, typename out_t>
void scatter_kernel(const scalar_t* grad, const CollapsedStrides& gs, const ConvPlan& plan,
                    int64_t first, int64_t count, out_t* out, const CollapsedStrides& os,
                    bool accumulate, const scalar_t* initial) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lead = plan.lead;
  const int64_t voxels = plan.inner_in_voxels, channels = plan.in_channels;
  const int64_t tile = voxel_tile(channels, sizeof(acc_t), voxels);
  const int64_t tiles = ceil_div(voxels, tile);
  const int64_t lead_in = product(c10::IntArrayRef(plan.in_sizes).slice(0, lead));
  const LeadReaders readers(plan);
  at::parallel_for(0, plan.batch * lead_in * tiles, 1, [&](int64_t begin, int64_t end) {
    LeadReaders::Scratch work(lead);
    std::vector<acc_t> acc(tile * channels);  // acc[v * channels + c]
    for (int64_t task = begin; task < end; ++task) {
      const int64_t b = task / (lead_in * tiles), s = task / tiles % lead_in;
      const int64_t v0 = (task % tiles) * tile, nv = std::min(tile, voxels - v0);
      for (int64_t v = 0; v < nv; ++v) {
        for (int64_t c = 0; c < channels; ++c) {
          acc[v * channels + c] = initial == nullptr ? acc_t(0) : acc_t(initial[c]);
        }
      }
      readers.for_each(s, first, count, work, [&](int64_t t, int64_t k) {
        const scalar_t* src = grad + (b * count + t - first) * gs.batch;
        for (int64_t v = 0; v < nv; ++v) {
          acc_t* acc_row = acc.data() + v * channels;
          if (!plan.pad_inner) {
            add_voxel(acc_row, src + (v0 + v) * gs.voxel, gs.channel, k, plan);
            continue;
          }
          for (int64_t i = readers.copies_begin(v0 + v); i < readers.copies_end(v0 + v); ++i) {
            add_voxel(acc_row, src + readers.copy(i) * gs.voxel, gs.channel, k, plan);
          }
        }
      });
      out_t* dst = out + b * os.batch + v0 * os.voxel +
                   ravel_index(work.coords.data(), os.lead.data(), lead);
      if constexpr (std::is_same_v<acc_t, out_t>) {
        if (!accumulate) {
          copy_plane(dst, os.voxel, os.channel, acc.data(), channels, int64_t{1}, nv, channels);
          continue;
        }
      }
      for (int64_t c = 0; c < channels; ++c) {
        out_t* column = dst + c * os.channel;
        for (int64_t v = 0; v < nv; ++v) {
          const acc_t value = acc[v * channels + c];
          column[v * os.voxel] = static_cast<out_t>(
              accumulate ? static_cast<acc_t>(column[v * os.voxel]) + value : value);
        }
      }
    }
  });
}

}  // namespace

PadMode parse_padding_mode(const char* op, std::string_view mode) {
  if (mode == "zeros") return PadMode::kConstant;
  if (mode == "reflect") return PadMode::kReflect;
  if (mode == "replicate") return PadMode::kReplicate;
  TORCH_CHECK(mode == "circular", "ndops::", op, ": padding_mode must be 'zeros', 'reflect', ",
              "'replicate' or 'circular', got '", mode, "'");
  return PadMode::kCircular;
}

ConvPlan make_conv_plan(const char* op, const at::Tensor& input, const at::Tensor& weight,
                        c10::IntArrayRef stride, c10::IntArrayRef padding,
                        c10::IntArrayRef dilation, int64_t groups,
                        std::string_view padding_mode, int lead) {
  const int64_t n = weight.dim() - 2;
  TORCH_CHECK(n >= 1 && input.dim() == n + 2, "ndops::", op, ": input must have shape (B, C, ",
              "*spatial) with as many spatial dims as weight (C_out, C_in/groups, *kernel), ",
              "got input ", input.sizes(), " and weight ", weight.sizes());
  const int64_t pads = static_cast<int64_t>(padding.size());
  TORCH_CHECK(static_cast<int64_t>(stride.size()) == n &&
                  static_cast<int64_t>(dilation.size()) == n && (pads == n || pads == 2 * n),
              "ndops::", op, ": stride and dilation must have ", n, " entries and padding ", n,
              " or ", 2 * n, ", got ", stride, ", ", dilation, " and ", padding);
  TORCH_CHECK(groups > 0 && weight.size(0) % groups == 0 &&
                  input.size(1) == weight.size(1) * groups,
              "ndops::", op, ": groups=", groups, " must divide out_channels (", weight.size(0),
              ") and in_channels (", input.size(1), ") must be weight.size(1) * groups");
  TORCH_CHECK(input.scalar_type() == weight.scalar_type(), "ndops::", op, ": input (",
              input.scalar_type(), ") and weight (", weight.scalar_type(), ") must match");
  TORCH_CHECK(lead >= std::max<int64_t>(n - 3, 0) && lead < n, "ndops::", op, ": cannot ",
              "gather ", lead, " of ", n, " dims (the native conv takes 1 to 3)");
  ConvPlan plan;
  plan.ndim = static_cast<int>(n);
  plan.lead = lead;
  plan.mode = parse_padding_mode(op, padding_mode);
  plan.batch = input.size(0);
  plan.in_channels = input.size(1);
  plan.out_channels = weight.size(0);
  plan.groups = groups;
  plan.group_channels = weight.size(1);
  for (int64_t d = 0; d < n; ++d) {
    const int64_t in = input.size(d + 2), k = weight.size(d + 2);
    const int64_t left = padding[pads == n ? d : 2 * d];
    const int64_t right = padding[pads == n ? d : 2 * d + 1];
    TORCH_CHECK(stride[d] > 0 && dilation[d] > 0 && left >= 0 && right >= 0 && k > 0 && in > 0,
                "ndops::", op, ": needs kernel, stride, dilation, spatial sizes > 0 and ",
                "padding >= 0, got kernel ", weight.sizes().slice(2), ", stride ", stride,
                ", dilation ", dilation, ", padding ", padding, ", input ", input.sizes());
    TORCH_CHECK(plan.mode != PadMode::kReflect || (left < in && right < in), "ndops::", op,
                ": reflect padding must be smaller than the input size, got padding (", left,
                ", ", right, ") for size ", in, " in spatial dim ", d);
    TORCH_CHECK(plan.mode != PadMode::kCircular || (left <= in && right <= in), "ndops::", op,
                ": circular padding must be at most the input size, got padding (", left,
                ", ", right, ") for size ", in, " in spatial dim ", d);
    const int64_t out = conv_output_size(in, k, stride[d], left, right, dilation[d]);
    TORCH_CHECK(out > 0, "ndops::", op, ": the output would be empty along spatial dim ", d,
                " (input size ", in, ", padding (", left, ", ", right, "), dilated kernel ",
                dilation[d] * (k - 1) + 1, ")");
    plan.in_sizes.push_back(in);
    plan.out_sizes.push_back(out);
    plan.kernel.push_back(k);
    plan.stride.push_back(stride[d]);
    plan.pad_left.push_back(left);
    plan.pad_right.push_back(right);
    plan.dilation.push_back(dilation[d]);
    if (d < lead) {
      plan.taps *= k;
      plan.lead_positions *= out;
      plan.source_begin.push_back(static_cast<int64_t>(plan.source.size()));
      for (int64_t o = 0; o < out; ++o) {
        for (int64_t tap = 0; tap < k; ++tap) {
          plan.source.push_back(
              conv_tap_source(plan.mode, o, tap, in, stride[d], left, right, dilation[d]));
        }
      }
    } else {
      plan.inner_in_voxels *= in;
      plan.inner_out_voxels *= out;
      plan.pad_inner = plan.pad_inner || plan.mode != PadMode::kConstant || left != right;
    }
  }
  for (int64_t d = lead; d < n; ++d) {
    plan.gathered_inner_sizes.push_back(
        plan.pad_inner ? plan.in_sizes[d] + plan.pad_left[d] + plan.pad_right[d]
                       : plan.in_sizes[d]);
    plan.gathered_voxels *= plan.gathered_inner_sizes.back();
  }
  if (plan.pad_inner) {
    const int inner = static_cast<int>(n) - lead;
    std::vector<int64_t> coords(inner, 0);
    plan.inner_source.resize(plan.gathered_voxels);
    for (int64_t v = 0; v < plan.gathered_voxels; ++v) {
      plan.inner_source[v] = padded_voxel_source(
          plan.mode, coords.data(), plan.in_sizes.data() + lead, plan.pad_left.data() + lead,
          plan.pad_right.data() + lead, inner);
      advance_index(coords.data(), plan.gathered_inner_sizes.data(), inner);
    }
  }
  return plan;
}

CollapsedStrides collapsed_or_fail(const at::Tensor& t, int lead, const char* what) {
  auto strides = collapse_inner(t, lead);
  TORCH_INTERNAL_ASSERT(strides.has_value(), "ndops::conv_nd: ", what,
                        " has inner dims that do not collapse");
  return *strides;
}

std::optional<CollapsedStrides> collapse_inner(const at::Tensor& t, int lead) {
  CollapsedStrides s;
  s.batch = t.stride(0);
  s.channel = t.stride(1);
  for (int d = 0; d < lead; ++d) s.lead.push_back(t.stride(d + 2));
  s.voxel = 1;
  int64_t outer = -1;  // the last inner dim of size > 1 seen so far (walking inwards)
  for (int64_t d = 2 + lead; d < t.dim(); ++d) {
    if (t.size(d) == 1) continue;
    if (outer >= 0 && t.stride(outer) != t.stride(d) * t.size(d)) return std::nullopt;
    outer = d;
    s.voxel = t.stride(d);
  }
  return s;
}

void gather_taps(const at::Tensor& input, const ConvPlan& plan, int64_t first, int64_t count,
                 at::Tensor& gathered) {
  RECORD_FUNCTION("ndops::conv_nd::gather_taps", {});
#if defined(NDOPS_WITH_CUDA)
  if (input.is_cuda()) return cuda::gather_taps(input, plan, first, count, gathered);
#endif
  const CollapsedStrides is = collapsed_or_fail(input, plan.lead, "input");
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES_AND2(
      at::kHalf, at::kBFloat16, input.scalar_type(), "conv_nd_gather", [&] {
        const scalar_t* in = input.const_data_ptr<scalar_t>();
        scalar_t* out = gathered.mutable_data_ptr<scalar_t>();
        if (!plan.pad_inner) gather_by_input(in, is, plan, first, count, out);
        gather_by_output(in, is, plan, first, count, out, /*only_padding=*/!plan.pad_inner);
      });
}

void scatter_taps(const at::Tensor& grad_gathered, const ConvPlan& plan, int64_t first,
                  int64_t count, at::Tensor& grad_input, bool accumulate,
                  const at::Tensor& initial) {
  RECORD_FUNCTION("ndops::conv_nd::scatter_taps", {});
#if defined(NDOPS_WITH_CUDA)
  if (grad_gathered.is_cuda()) {
    return cuda::scatter_taps(grad_gathered, plan, first, count, grad_input, accumulate, initial);
  }
#endif
  const CollapsedStrides gs = collapsed_or_fail(grad_gathered, 0, "the gathered gradient");
  const CollapsedStrides os = collapsed_or_fail(grad_input, plan.lead, "grad_input");
  const at::Tensor init = initial.defined() && !accumulate ? initial.contiguous() : initial;
  AT_DISPATCH_FLOATING_AND_COMPLEX_TYPES_AND2(
      at::kHalf, at::kBFloat16, grad_gathered.scalar_type(), "conv_nd_scatter", [&] {
        const scalar_t* grad = grad_gathered.const_data_ptr<scalar_t>();
        const scalar_t* init_data =
            init.defined() && !accumulate ? init.const_data_ptr<scalar_t>() : nullptr;
        if (grad_input.scalar_type() == grad_gathered.scalar_type()) {
          scatter_kernel<scalar_t, scalar_t>(grad, gs, plan, first, count,
                                             grad_input.mutable_data_ptr<scalar_t>(), os,
                                             accumulate, init_data);
        } else {  // accumulating chunks of a reduced-precision gradient in its opmath type
          using acc_t = at::opmath_type<scalar_t>;
          TORCH_INTERNAL_ASSERT(grad_input.scalar_type() == c10::CppTypeToScalarType<acc_t>());
          scatter_kernel<scalar_t, acc_t>(grad, gs, plan, first, count,
                                          grad_input.mutable_data_ptr<acc_t>(), os, accumulate,
                                          init_data);
        }
      });
}

}  // namespace ndops
