// Per-channel coefficients of fused batch norm + activation, shared by the CPU and CUDA kernels.
//
// Forward: z = (x - mean) * invstd * weight + bias = x * scale + shift, y = act(z).
// Backward, with dz = dy * act'(z) and, per channel over its n values,
//   sum_dz = sum(dz), sum_dz_centered = sum(dz * (x - mean)), xhat = (x - mean) * invstd:
//   grad_bias = sum_dz, grad_weight = invstd * sum_dz_centered (= sum(dz * xhat)), and
//   training (mean, invstd depend on x):
//     dx = weight * invstd * (dz - sum_dz / n - xhat * sum(dz * xhat) / n)
//        = dz * (weight * invstd) + (x - mean) * (-weight * invstd^3 * sum_dz_centered / n)
//          + (-weight * invstd * sum_dz / n);
//   eval (mean, invstd are constants): dx = dz * weight * invstd.
#pragma once

#include <c10/macros/Macros.h>

#include <math.h>

#include <cstdint>

#include "common/activation.h"

namespace ndops {

C10_HOST_DEVICE inline float inverse_std(float var, double eps) {
  return 1.0f / ::sqrtf(var + static_cast<float>(eps));
}
C10_HOST_DEVICE inline double inverse_std(double var, double eps) {
  return 1.0 / ::sqrt(var + eps);
}

// The running statistic after one batch: (1 - momentum) * running + momentum * batch.
template <typename acc_t>
C10_HOST_DEVICE inline acc_t running_update(acc_t running, acc_t batch, acc_t momentum) {
  return momentum * batch + (acc_t(1) - momentum) * running;
}

// The pre-activation z = x * scale + shift of one channel.
template <typename acc_t>
struct ChannelAffine {
  acc_t scale;
  acc_t shift;
};

template <typename acc_t>
C10_HOST_DEVICE inline ChannelAffine<acc_t> channel_affine(acc_t mean, acc_t invstd,
                                                           acc_t weight, acc_t bias) {
  const acc_t scale = weight * invstd;
  return {scale, bias - mean * scale};
}

// The gradient at the pre-activation z = x * scale + shift (recomputed from x, not saved).
template <Activation kAct, typename acc_t>
C10_HOST_DEVICE inline acc_t pre_activation_grad(acc_t x, acc_t dy, ChannelAffine<acc_t> affine,
                                                 acc_t negative_slope) {
  return dy * activation_derivative<kAct>(x * affine.scale + affine.shift, negative_slope);
}

// dx = dz * dz_coef + (x - mean) * centered_coef + constant for one channel.
template <typename acc_t>
struct GradInputCoefficients {
  acc_t dz_coef;
  acc_t centered_coef;
  acc_t constant;
};

template <typename acc_t>
C10_HOST_DEVICE inline GradInputCoefficients<acc_t> grad_input_coefficients(
    bool training, acc_t invstd, acc_t weight, acc_t sum_dz, acc_t sum_dz_centered,
    int64_t count) {
  const acc_t dz_coef = weight * invstd;
  if (!training) return {dz_coef, acc_t(0), acc_t(0)};
  const acc_t inv_count = acc_t(1) / static_cast<acc_t>(count);
  return {dz_coef, -dz_coef * invstd * invstd * sum_dz_centered * inv_count,
          -dz_coef * sum_dz * inv_count};
}

}  // namespace ndops
