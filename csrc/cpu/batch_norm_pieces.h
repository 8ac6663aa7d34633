// The per-piece loops of the batch norm + activation CPU kernels (csrc/cpu/batch_norm.cpp):
// statistics, normalization and the two gradient sweeps over one contiguous run of a channel.
// Plain loops written for the compiler's vectorizer: kLanes independent partial sums, no
// calls, and selects it if-converts. NB: only batch_norm.cpp includes this, after its
// no-trapping-math pragma (see there), which these loops need to vectorize.
#pragma once

#include <ATen/OpMathType.h>

#include <cstdint>

#include "common/activation.h"
#include "common/batch_norm.h"
#include "common/welford.h"

namespace ndops {
namespace batch_norm_pieces {

constexpr int kLanes = 16;  // independent partial sums: vectorizable reductions

// The per-piece loops are also compiled for AVX-512 and for AVX2 + FMA, the variant picked at
// load time for the CPU (GCC function multiversioning); the extension targets baseline x86-64.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define NDOPS_CPU_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define NDOPS_CPU_CLONES
#endif

template <typename acc_t>
acc_t lane_total(const acc_t (&lanes)[kLanes]) {
  acc_t total = 0;
  for (int k = 0; k < kLanes; ++k) total += lanes[k];
  return total;
}

// Mean and M2 of x[0, n): two passes over the whole lanes (the second from cache), then
// Welford updates for the remainder.
template <typename acc_t, typename scalar_t>
NDOPS_CPU_CLONES
WelfordStats<acc_t> piece_stats(const scalar_t* x, int64_t n) {
  const int64_t whole = n - n % kLanes;
  WelfordStats<acc_t> stats;
  if (whole > 0) {
    acc_t sums[kLanes] = {};
    for (int64_t i = 0; i < whole; i += kLanes) {
      for (int k = 0; k < kLanes; ++k) sums[k] += static_cast<acc_t>(x[i + k]);
    }
    const acc_t mean = lane_total(sums) / static_cast<acc_t>(whole);
    acc_t squares[kLanes] = {};
    for (int64_t i = 0; i < whole; i += kLanes) {
      for (int k = 0; k < kLanes; ++k) {
        const acc_t d = static_cast<acc_t>(x[i + k]) - mean;
        squares[k] += d * d;
      }
    }
    stats = {mean, lane_total(squares), whole};
  }
  for (int64_t i = whole; i < n; ++i) welford_update(stats, static_cast<acc_t>(x[i]));
  return stats;
}

template <Activation kAct, typename scalar_t, typename acc_t>
NDOPS_CPU_CLONES
void normalize_piece(const scalar_t* x, scalar_t* y, int64_t n, ChannelAffine<acc_t> affine,
                     acc_t negative_slope) {
  for (int64_t i = 0; i < n; ++i) {
    const acc_t z = static_cast<acc_t>(x[i]) * affine.scale + affine.shift;
    y[i] = static_cast<scalar_t>(activation_forward<kAct>(z, negative_slope));
  }
}

template <typename acc_t>
struct GradSums {
  acc_t dz = 0, dz_centered = 0;  // sum(dz), sum(dz * (x - mean))
};

// GradSums of one piece; with kWriteGrad also dx = dz * dz_coef (eval mode, one sweep).
template <Activation kAct, bool kWriteGrad, typename scalar_t, typename acc_t>
NDOPS_CPU_CLONES
GradSums<acc_t> grad_sums_piece(const scalar_t* x, const scalar_t* dy, scalar_t* dx, int64_t n,
                                acc_t mean, ChannelAffine<acc_t> affine, acc_t negative_slope,
                                acc_t dz_coef) {
  acc_t dz_sums[kLanes] = {}, centered_sums[kLanes] = {};
  const auto visit = [&](int64_t i, int lane) {
    const acc_t xv = static_cast<acc_t>(x[i]);
    const acc_t dz = pre_activation_grad<kAct>(xv, static_cast<acc_t>(dy[i]), affine,
                                               negative_slope);
    dz_sums[lane] += dz;
    centered_sums[lane] += dz * (xv - mean);
    if constexpr (kWriteGrad) dx[i] = static_cast<scalar_t>(dz * dz_coef);
  };
  const int64_t whole = n - n % kLanes;
  for (int64_t i = 0; i < whole; i += kLanes) {
    for (int k = 0; k < kLanes; ++k) visit(i + k, k);
  }
  for (int64_t i = whole; i < n; ++i) visit(i, static_cast<int>(i - whole));
  GradSums<acc_t> sums;
  sums.dz = lane_total(dz_sums);
  sums.dz_centered = lane_total(centered_sums);
  return sums;
}

template <Activation kAct, typename scalar_t, typename acc_t>
NDOPS_CPU_CLONES
void grad_input_piece(const scalar_t* x, const scalar_t* dy, scalar_t* dx, int64_t n,
                      acc_t mean, ChannelAffine<acc_t> affine, acc_t negative_slope,
                      GradInputCoefficients<acc_t> k) {
  for (int64_t i = 0; i < n; ++i) {
    const acc_t xv = static_cast<acc_t>(x[i]);
    const acc_t dz = pre_activation_grad<kAct>(xv, static_cast<acc_t>(dy[i]), affine,
                                               negative_slope);
    dx[i] = static_cast<scalar_t>(dz * k.dz_coef + (xv - mean) * k.centered_coef + k.constant);
  }
}

}  // namespace batch_norm_pieces
}  // namespace ndops

#undef NDOPS_CPU_CLONES
