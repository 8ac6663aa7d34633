"""DDPM and DDIM sampling loops for :class:`.gaussian.GaussianDiffusion`.

Both walk a descending timestep sequence tau_1 > ... > tau_S (all T steps, or an evenly spaced
subsequence) and, at each step, predict (eps, x0) from x_{tau_i}, then move to x_{tau_{i+1}}
(x_{-1} means the clean sample, alpha_bar_{-1} = 1). With a = alpha_bar_{tau_i} and
p = alpha_bar_{tau_{i+1}}:

- DDPM (Ho et al. 2020, respaced as in Nichol & Dhariwal 2021): draw from the posterior
  q(x_prev | x_t, x0) of the chain restricted to the sequence, whose step variance is
  beta' = 1 - a / p: mean = sqrt(p) beta' / (1 - a) * x0 + sqrt(1 - beta') (1 - p) / (1 - a) * x_t,
  variance = beta' (1 - p) / (1 - a). For the full sequence these are the schedule's
  posterior_mean_coef1/2 and posterior_variance.
- DDIM (Song et al. 2021, Eq. 12): x_prev = sqrt(p) x0 + sqrt(1 - p - sigma^2) eps + sigma z with
  sigma = eta * sqrt((1 - p) / (1 - a) * (1 - a / p)); eta = 1 gives DDPM's variance (and the
  same update), eta = 0 a deterministic map from x_T to the sample.
"""
import math
import numbers

import torch

SAMPLERS = ("ddpm", "ddim")
_WHERE = "ndops.models.diffusion.GaussianDiffusion.sample"


def timestep_sequence(num_timesteps, steps):
    """The ``steps`` timesteps visited when sampling, descending: ``round(linspace(T-1, 0,
    steps))`` (the "trailing" spacing: it always starts at T-1, the noisiest step, and ends at
    0 when steps >= 2). Values are distinct for steps <= T. Returns a list of ints."""
    if (not isinstance(steps, numbers.Integral) or isinstance(steps, bool)
            or not 1 <= steps <= num_timesteps):
        raise ValueError(f"{_WHERE}: steps must be an int in [1, timesteps={num_timesteps}], "
                         f"got {steps!r}")
    seq = torch.linspace(num_timesteps - 1, 0, int(steps), dtype=torch.float64).round()
    return [int(v) for v in seq]


def _progress(iterable, enabled):
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        raise ImportError(f"{_WHERE}: progress=True needs tqdm (pip install tqdm)") from None
    return tqdm(iterable, desc="sampling")


def _check_arguments(diffusion, shape, sampler, steps, eta, y, guidance_scale, x_T):
    if sampler not in SAMPLERS:
        raise ValueError(f"{_WHERE}: sampler must be one of {SAMPLERS}, got {sampler!r}")
    if (not isinstance(shape, (tuple, list, torch.Size)) or len(shape) < 3
            or not all(isinstance(s, numbers.Integral) and s >= 1 for s in shape)):
        raise ValueError(f"{_WHERE}: shape must be (B, C, *spatial) with positive ints and at "
                         f"least one spatial dim, got {shape!r}")
    in_channels = getattr(diffusion.model, "in_channels", None)
    if in_channels is not None and shape[1] != in_channels:
        raise ValueError(f"{_WHERE}: shape[1] (channels) must be the model's in_channels "
                         f"({in_channels}), got {shape[1]}")
    if eta is not None:
        if sampler != "ddim":
            raise ValueError(f"{_WHERE}: eta applies to sampler='ddim' only (DDPM's variance "
                             f"is fixed); got eta={eta!r} with sampler={sampler!r}")
        if not (isinstance(eta, numbers.Real) and eta >= 0):
            raise ValueError(f"{_WHERE}: eta must be a number >= 0, got {eta!r}")
    if not isinstance(guidance_scale, numbers.Real):
        raise ValueError(f"{_WHERE}: guidance_scale must be a number, got {guidance_scale!r}")
    if guidance_scale != 1.0 and y is None:
        raise ValueError(f"{_WHERE}: guidance_scale={guidance_scale} needs class labels y "
                         f"(classifier-free guidance); pass y or use guidance_scale=1.0")
    diffusion._check_labels(y, shape[0])
    if x_T is not None and (not isinstance(x_T, torch.Tensor) or x_T.shape != tuple(shape)):
        raise ValueError(f"{_WHERE}: x_T must be a tensor of shape {tuple(shape)}, got "
                         f"{getattr(x_T, 'shape', x_T)!r}")
    return timestep_sequence(diffusion.num_timesteps,
                             diffusion.num_timesteps if steps is None else steps)


def _default_dtype(model):
    parameters = getattr(model, "parameters", None)
    if callable(parameters):
        for p in parameters():
            if p.is_floating_point():
                return p.dtype
    return torch.float32


def sample(diffusion, shape, *, sampler, steps, eta, y, guidance_scale, generator,
           return_trajectory, progress, clip_denoised, x_T, device, dtype):
    """The sampling loop behind :meth:`GaussianDiffusion.sample` (see there); the caller
    handles eval mode and no_grad."""
    seq = _check_arguments(diffusion, shape, sampler, steps, eta, y, guidance_scale, x_T)
    eta = 0.0 if eta is None else float(eta)
    if x_T is not None:
        device = x_T.device if device is None else device
        dtype = x_T.dtype if dtype is None else dtype
    device = diffusion.betas.device if device is None else torch.device(device)
    dtype = _default_dtype(diffusion.model) if dtype is None else dtype
    if x_T is None:
        x = torch.randn(tuple(shape), generator=generator, device=device, dtype=dtype)
    else:
        x = x_T.to(device=device, dtype=dtype)
    if y is not None:
        y = y.to(device)
    abar = diffusion.alphas_cumprod_f64
    trajectory = [x] if return_trajectory else None

    for i in _progress(range(len(seq)), progress):
        t = seq[i]
        a = abar[t].item()
        p = abar[seq[i + 1]].item() if i + 1 < len(seq) else 1.0
        t_batch = torch.full((shape[0],), t, dtype=torch.long, device=device)
        eps, x0 = diffusion.predict(x, t_batch, y, guidance_scale, clip_denoised)
        if sampler == "ddpm":
            beta = 1.0 - a / p
            mean = (math.sqrt(p) * beta / (1.0 - a)) * x0 \
                + (math.sqrt(1.0 - beta) * (1.0 - p) / (1.0 - a)) * x
            std = math.sqrt(beta * (1.0 - p) / (1.0 - a))
        else:
            std = eta * math.sqrt((1.0 - p) / (1.0 - a) * (1.0 - a / p))
            mean = math.sqrt(p) * x0 + math.sqrt(max(1.0 - p - std ** 2, 0.0)) * eps
        if std > 0:
            noise = torch.randn(x.shape, generator=generator, device=device, dtype=dtype)
            x = mean + std * noise
        else:
            x = mean
        if return_trajectory:
            trajectory.append(x)
    return (x, torch.stack(trajectory)) if return_trajectory else x
