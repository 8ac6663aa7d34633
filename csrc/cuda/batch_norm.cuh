// Shared by the CUDA kernels of batch_norm_act_nd (batch_norm_forward.cu) and its backward
// (batch_norm_backward.cu): the tiling of the per-channel planes, block reductions and the
// per-channel parameters. Per-element math: csrc/common/welford.h, activation.h, batch_norm.h,
// the functions the CPU kernels (csrc/cpu/batch_norm.cpp) call.
//
// The input (B, C, *spatial) is seen as B x C planes of S contiguous elements, cut into tiles of
// at most kTile elements. A reduction per channel runs on a grid of (C, splits) blocks, block
// (c, s) taking tiles s, s + splits, ... of channel c; each block writes one partial result,
// and one thread per channel merges the partials in order: results do not depend on timing
// (deterministic), and the work spreads over the GPU for any B, C (one channel included).
#pragma once

#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cstdint>
#include <optional>

#include "common/activation.h"
#include "common/batch_norm.h"
#include "common/batch_norm_shape.h"
#include "common/welford.h"
#include "cuda/launch.cuh"

namespace ndops {
namespace cuda {

constexpr int64_t kTile = 4 * kThreads;

struct PlaneTiles {
  int64_t batch, channels, inner, tiles_per_plane;

  explicit PlaneTiles(c10::IntArrayRef sizes) : batch(sizes[0]), channels(sizes[1]), inner(1) {
    for (size_t d = 2; d < sizes.size(); ++d) inner *= sizes[d];
    tiles_per_plane = std::max<int64_t>(1, (inner + kTile - 1) / kTile);
  }
  int64_t values_per_channel() const { return batch * inner; }
  // Blocks per channel of a reduction: about four blocks per multiprocessor in all.
  int splits() const {
    const int64_t wanted = (4 * int64_t{multiprocessors()} + channels - 1) / channels;
    return static_cast<int>(std::clamp<int64_t>(wanted, 1, std::min<int64_t>(
                                                              batch * tiles_per_plane, 65535)));
  }
};

// Calls visit(offset) for every element of channel c in the tiles of block `split` of
// `splits`, the threads of the block sharing each tile.
template <typename Visit>
__device__ __forceinline__ void for_channel_tiles(const PlaneTiles& p, int64_t c, int split,
                                                  int splits, const Visit& visit) {
  const int64_t tiles = p.batch * p.tiles_per_plane;
  for (int64_t t = split; t < tiles; t += splits) {
    const int64_t b = t / p.tiles_per_plane, begin = (t - b * p.tiles_per_plane) * kTile;
    const int64_t end = begin + kTile < p.inner ? begin + kTile : p.inner;
    const int64_t plane = (b * p.channels + c) * p.inner;
    for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) visit(plane + e);
  }
}

// Calls visit(offset, c) for every element of the tensor, tile by tile over the whole grid.
template <typename Visit>
__device__ __forceinline__ void for_all_tiles(const PlaneTiles& p, const Visit& visit) {
  const int64_t tiles = p.batch * p.channels * p.tiles_per_plane;
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int64_t plane = t / p.tiles_per_plane, begin = (t - plane * p.tiles_per_plane) * kTile;
    const int64_t end = begin + kTile < p.inner ? begin + kTile : p.inner;
    const int64_t c = plane % p.channels;
    for (int64_t e = begin + threadIdx.x; e < end; e += blockDim.x) visit(plane * p.inner + e, c);
  }
}

template <typename T>
__device__ __forceinline__ T shuffle_down(T value, int delta) {
  return __shfl_down_sync(0xffffffffu, value, delta);
}

template <typename acc_t>
__device__ __forceinline__ WelfordStats<acc_t> shuffle_down(const WelfordStats<acc_t>& s,
                                                            int delta) {
  WelfordStats<acc_t> out;
  out.mean = shuffle_down(s.mean, delta);
  out.m2 = shuffle_down(s.m2, delta);
  out.count = static_cast<int64_t>(shuffle_down(static_cast<long long>(s.count), delta));
  return out;
}

// sum(dz) and sum(dz * (x - mean)) of a channel (see common/batch_norm.h).
template <typename acc_t>
struct GradSums {
  acc_t dz, dz_centered;
};

template <typename acc_t>
__device__ __forceinline__ GradSums<acc_t> shuffle_down(const GradSums<acc_t>& s, int delta) {
  return {shuffle_down(s.dz, delta), shuffle_down(s.dz_centered, delta)};
}

// The merge of every thread's `value` (a tree in a fixed order), valid in thread 0. `identity`
// merges into anything unchanged; blockDim.x is a multiple of 32, at most 1024.
template <typename T, typename Merge>
__device__ T block_reduce(T value, T identity, const Merge& merge) {
  __shared__ alignas(16) unsigned char storage[32 * sizeof(T)];
  T* warp_results = reinterpret_cast<T*>(storage);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  for (int delta = 16; delta > 0; delta /= 2) value = merge(value, shuffle_down(value, delta));
  if (lane == 0) warp_results[warp] = value;
  __syncthreads();
  if (warp == 0) {
    value = lane < static_cast<int>(blockDim.x / 32) ? warp_results[lane] : identity;
    for (int delta = 16; delta > 0; delta /= 2) value = merge(value, shuffle_down(value, delta));
  }
  return value;
}

// A (C,) tensor as a contiguous acc_t tensor on the input's device, or undefined if not given.
inline at::Tensor channel_tensor(const std::optional<at::Tensor>& t, at::ScalarType acc_type) {
  return bn::given(t) ? t->to(acc_type).contiguous() : at::Tensor();
}

template <typename acc_t>
const acc_t* data_or_null(const at::Tensor& t) {
  return t.defined() ? t.const_data_ptr<acc_t>() : nullptr;
}

template <typename acc_t>
__device__ __forceinline__ acc_t value_or(const acc_t* values, int64_t c, acc_t fallback) {
  return values != nullptr ? values[c] : fallback;
}

}  // namespace cuda
}  // namespace ndops
