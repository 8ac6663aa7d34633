// CPU moves between conv_nd's output layout (B, C_out, *lead_out, *inner_out) and the native
// conv's (B * lead positions, C_out, *inner_out), with the activation epilogue fused in
// (declared in csrc/cpu/conv_gather.h; activation math: csrc/common/activation.h). The entry
// points hand CUDA tensors to csrc/cuda/conv_epilogue.cu.
//
// Each task moves one plane (a tile of voxels x all channels). With an activation, the tile
// first lands channels-last in a scratch buffer that stays in L1, where act (forward) or
// act' (backward) is applied, so the output is still read and written once.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <vector>

#include "common/activation.h"
#include "common/activation_dispatch.h"
#include "common/nd_index.h"
#include "cpu/conv_gather.h"
#include "cpu/conv_planes.h"

#if defined(NDOPS_WITH_CUDA)
#include "cuda/conv_passes.h"
#endif

namespace ndops {
namespace {

// The tasks of a move: (entry b * count + i, tile of voxels). offsets(task) gives the
// plane's first element on the native side and, for each of `lead_side` strides, on that side.
struct MoveTasks {
  const ConvPlan& plan;
  int64_t first, count, tile, tiles;

  int64_t size() const { return plan.batch * count * tiles; }
  int64_t entry(int64_t task) const { return task / tiles; }
  int64_t first_voxel(int64_t task) const { return task % tiles * tile; }
  int64_t voxels(int64_t task) const {
    return std::min(tile, plan.inner_out_voxels - first_voxel(task));
  }
  int64_t native_offset(int64_t task, const CollapsedStrides& ns) const {
    return entry(task) * ns.batch + first_voxel(task) * ns.voxel;
  }
  // `coords`: scratch for the leading coordinates.
  int64_t lead_offset(int64_t task, const CollapsedStrides& ls,
                      std::vector<int64_t>& coords) const {
    unravel_index(entry(task) % count + first, plan.out_sizes.data(), plan.lead, coords.data());
    return entry(task) / count * ls.batch + first_voxel(task) * ls.voxel +
           ravel_index(coords.data(), ls.lead.data(), plan.lead);
  }
};

MoveTasks move_tasks(const ConvPlan& plan, int64_t first, int64_t count, int64_t element) {
  const int64_t tile = voxel_tile(plan.out_channels, element, plan.inner_out_voxels);
  return {plan, first, count, tile, ceil_div(plan.inner_out_voxels, tile)};
}

template <Activation kAct, typename scalar_t>
void unpack_kernel(const scalar_t* native, const CollapsedStrides& ns, scalar_t* out,
                   const CollapsedStrides& os, scalar_t* pre, const CollapsedStrides& ps,
                   const MoveTasks& tasks, double negative_slope) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t channels = tasks.plan.out_channels;
  const acc_t slope = static_cast<acc_t>(negative_slope);
  at::parallel_for(0, tasks.size(), 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> coords(tasks.plan.lead);
    std::vector<scalar_t> scratch(kAct == Activation::kNone ? 0 : tasks.tile * channels);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t nv = tasks.voxels(task);
      const scalar_t* src = native + tasks.native_offset(task, ns);
      scalar_t* dst = out + tasks.lead_offset(task, os, coords);
      if (pre != nullptr) {
        copy_plane(pre + tasks.lead_offset(task, ps, coords), ps.voxel, ps.channel, src,
                   ns.voxel, ns.channel, nv, channels);
      }
      if constexpr (kAct == Activation::kNone) {
        copy_plane(dst, os.voxel, os.channel, src, ns.voxel, ns.channel, nv, channels);
      } else {
        copy_plane(scratch.data(), channels, int64_t{1}, src, ns.voxel, ns.channel, nv,
                   channels);
        for (int64_t i = 0; i < nv * channels; ++i) {
          scratch[i] = static_cast<scalar_t>(
              activation_forward<kAct>(static_cast<acc_t>(scratch[i]), slope));
        }
        copy_plane(dst, os.voxel, os.channel, scratch.data(), channels, int64_t{1}, nv,
                   channels);
      }
    }
  });
}

template <Activation kAct, typename scalar_t>
void pack_kernel(const scalar_t* grad, const CollapsedStrides& gs, const scalar_t* act_input,
                 const CollapsedStrides& as, scalar_t* packed, const CollapsedStrides& ns,
                 const MoveTasks& tasks, double negative_slope,
                 at::opmath_type<scalar_t>* bias_grad) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t channels = tasks.plan.out_channels;
  const acc_t slope = static_cast<acc_t>(negative_slope);
  // Per-task channel sums, added up in task order afterwards (deterministic).
  std::vector<acc_t> partials(bias_grad == nullptr ? 0 : tasks.size() * channels, acc_t(0));
  at::parallel_for(0, tasks.size(), 1, [&](int64_t begin, int64_t end) {
    std::vector<int64_t> coords(tasks.plan.lead);
    std::vector<scalar_t> scratch(kAct == Activation::kNone ? 0 : tasks.tile * channels);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t nv = tasks.voxels(task);
      scalar_t* dst = packed + tasks.native_offset(task, ns);
      copy_plane(dst, ns.voxel, ns.channel, grad + tasks.lead_offset(task, gs, coords),
                 gs.voxel, gs.channel, nv, channels);
      if constexpr (kAct != Activation::kNone) {
        copy_plane(scratch.data(), channels, int64_t{1},
                   act_input + tasks.lead_offset(task, as, coords), as.voxel, as.channel, nv,
                   channels);
        for (int64_t v = 0; v < nv; ++v) {
          for (int64_t c = 0; c < channels; ++c) {
            scalar_t& g = dst[v * ns.voxel + c * ns.channel];
            const acc_t z = static_cast<acc_t>(scratch[v * channels + c]);
            g = static_cast<scalar_t>(static_cast<acc_t>(g) *
                                      activation_derivative<kAct>(z, slope));
          }
        }
      }
      if (bias_grad != nullptr) {
        acc_t* partial = partials.data() + task * channels;
        for (int64_t v = 0; v < nv; ++v) {
          for (int64_t c = 0; c < channels; ++c) {
            partial[c] += static_cast<acc_t>(dst[v * ns.voxel + c * ns.channel]);
          }
        }
      }
    }
  });
  for (int64_t task = 0; bias_grad != nullptr && task < tasks.size(); ++task) {
    for (int64_t c = 0; c < channels; ++c) bias_grad[c] += partials[task * channels + c];
  }
}

template <Activation kAct, typename scalar_t>
void activation_grad_kernel(const scalar_t* grad, const scalar_t* act_input, scalar_t* out,
                            int64_t size, double negative_slope) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t slope = static_cast<acc_t>(negative_slope);
  at::parallel_for(0, size, 1 << 14, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      out[i] = static_cast<scalar_t>(
          static_cast<acc_t>(grad[i]) *
          activation_derivative<kAct>(static_cast<acc_t>(act_input[i]), slope));
    }
  });
}

}  // namespace

at::Tensor activation_grad(const at::Tensor& grad_output, const at::Tensor& activation_input,
                           const ConvEpilogue& epilogue) {
  if (epilogue.activation == Activation::kNone) return grad_output;
  TORCH_CHECK(grad_output.is_cpu(), "ndops: activation_grad takes CPU tensors");
  // Three tensors with the same dense strides: one flat loop over their memory.
  const at::Tensor grad = grad_output.is_non_overlapping_and_dense() ? grad_output
                                                                     : grad_output.contiguous();
  const at::Tensor act_input = activation_input.strides() == grad.strides()
                                   ? activation_input
                                   : at::empty_like(grad).copy_(activation_input);
  at::Tensor result = at::empty_like(grad);
  dispatch_epilogue(epilogue, grad.scalar_type(), [&](auto act, auto tag) {
    using scalar_t = decltype(tag);
    activation_grad_kernel<decltype(act)::value, scalar_t>(
        grad.const_data_ptr<scalar_t>(), act_input.const_data_ptr<scalar_t>(),
        result.mutable_data_ptr<scalar_t>(), grad.numel(), epilogue.negative_slope);
  });
  return result;
}

void unpack_positions(const at::Tensor& native, const ConvPlan& plan, int64_t first,
                      int64_t count, const ConvEpilogue& epilogue, at::Tensor& out,
                      const at::Tensor& pre_activation) {
  RECORD_FUNCTION("ndops::conv_nd::unpack_positions", {});
#if defined(NDOPS_WITH_CUDA)
  if (native.is_cuda()) {
    return cuda::unpack_positions(native, plan, first, count, epilogue, out, pre_activation);
  }
#endif
  const CollapsedStrides ns = collapsed_or_fail(native, 0, "the native conv's output");
  const CollapsedStrides os = collapsed_or_fail(out, plan.lead, "the output");
  const bool pre = pre_activation.defined();
  const CollapsedStrides ps = pre ? collapsed_or_fail(pre_activation, plan.lead, "z") : os;
  const MoveTasks tasks = move_tasks(plan, first, count, out.element_size());
  dispatch_epilogue(epilogue, out.scalar_type(), [&](auto act, auto tag) {
    using scalar_t = decltype(tag);
    unpack_kernel<decltype(act)::value, scalar_t>(
        native.const_data_ptr<scalar_t>(), ns, out.mutable_data_ptr<scalar_t>(), os,
        pre ? pre_activation.mutable_data_ptr<scalar_t>() : nullptr, ps, tasks,
        epilogue.negative_slope);
  });
}

void pack_positions(const at::Tensor& grad_output, const at::Tensor& activation_input,
                    const ConvPlan& plan, int64_t first, int64_t count,
                    const ConvEpilogue& epilogue, at::Tensor& packed, at::Tensor& bias_grad) {
  RECORD_FUNCTION("ndops::conv_nd::pack_positions", {});
#if defined(NDOPS_WITH_CUDA)
  if (grad_output.is_cuda()) {
    return cuda::pack_positions(grad_output, activation_input, plan, first, count, epilogue,
                                packed, bias_grad);
  }
#endif
  const CollapsedStrides gs = collapsed_or_fail(grad_output, plan.lead, "grad_output");
  const CollapsedStrides ns = collapsed_or_fail(packed, 0, "the packed grad_output");
  const bool act = epilogue.activation != Activation::kNone;
  const CollapsedStrides as =
      act ? collapsed_or_fail(activation_input, plan.lead, "the activation input") : gs;
  const MoveTasks tasks = move_tasks(plan, first, count, packed.element_size());
  dispatch_epilogue(epilogue, packed.scalar_type(), [&](auto act_tag, auto tag) {
    using scalar_t = decltype(tag);
    using acc_t = at::opmath_type<scalar_t>;
    pack_kernel<decltype(act_tag)::value, scalar_t>(
        grad_output.const_data_ptr<scalar_t>(), gs,
        act ? activation_input.const_data_ptr<scalar_t>() : nullptr, as,
        packed.mutable_data_ptr<scalar_t>(), ns, tasks, epilogue.negative_slope,
        bias_grad.defined() ? bias_grad.mutable_data_ptr<acc_t>() : nullptr);
  });
}

}  // namespace ndops
