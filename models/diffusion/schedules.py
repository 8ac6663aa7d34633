"""Noise schedules for Gaussian diffusion, kept in a registry keyed by name.

A schedule maps a number of timesteps T to the variances ``betas`` (float64, shape (T,)) of the
forward process ``q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)``, t = 0 .. T-1.
Everything else follows from the betas (:func:`schedule_tensors`):
``alphas_cumprod[t] = prod_{s <= t} (1 - beta_s)`` is the signal fraction of
``q(x_t | x_0) = N(sqrt(alphas_cumprod[t]) x_0, (1 - alphas_cumprod[t]) I)``.

Built in: ``"linear"``, ``"cosine"``, ``"sigmoid"``. Add your own with :func:`register_schedule`::

    @register_schedule("constant")
    def constant_schedule(timesteps, beta=0.01):
        return torch.full((timesteps,), beta, dtype=torch.float64)

    betas = get_schedule("constant", 100, beta=0.02)
"""
import inspect
import math
import numbers

import torch

_SCHEDULES = {}


def register_schedule(name):
    """Decorator registering ``fn(timesteps, **kwargs) -> betas`` under ``name``.

    The function receives T as an int and returns T betas; :func:`get_schedule` converts them
    to float64 and checks them. Registering a name twice raises ValueError.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"register_schedule: name must be a non-empty str, got {name!r}")

    def decorator(fn):
        if name in _SCHEDULES:
            raise ValueError(f"register_schedule: a schedule named {name!r} already exists")
        _SCHEDULES[name] = fn
        return fn

    return decorator


def available_schedules():
    """Names of the registered schedules, sorted."""
    return sorted(_SCHEDULES)


def get_schedule(name, timesteps, **kwargs):
    """Betas of the registered schedule ``name`` for ``timesteps`` steps: float64, shape (T,).

    ``kwargs`` go to the schedule function (e.g. ``get_schedule("cosine", 1000, s=0.01)``).
    Raises ValueError for an unknown name (listing the valid ones), an unknown keyword, T < 1,
    or betas outside the open interval (0, 1).
    """
    where = "ndops.models.diffusion.get_schedule"
    if name not in _SCHEDULES:
        raise ValueError(f"{where}: unknown schedule {name!r}; valid schedules are "
                         f"{available_schedules()}")
    if not isinstance(timesteps, numbers.Integral) or isinstance(timesteps, bool) or timesteps < 1:
        raise ValueError(f"{where}: timesteps must be an int >= 1, got {timesteps!r}")
    fn = _SCHEDULES[name]
    try:
        inspect.signature(fn).bind(int(timesteps), **kwargs)
    except TypeError as err:
        raise ValueError(f"{where}: bad keyword arguments {sorted(kwargs)} for schedule {name!r} "
                         f"(signature {name}{inspect.signature(fn)}): {err}") from None
    betas = torch.as_tensor(fn(int(timesteps), **kwargs), dtype=torch.float64).flatten()
    if betas.numel() != timesteps:
        raise ValueError(f"{where}: schedule {name!r} returned {betas.numel()} betas for "
                         f"timesteps={timesteps}")
    if not torch.isfinite(betas).all() or (betas <= 0).any() or (betas >= 1).any():
        raise ValueError(f"{where}: schedule {name!r} with timesteps={timesteps} and {kwargs} "
                         f"gives betas outside (0, 1) (min {betas.min().item():.4g}, max "
                         f"{betas.max().item():.4g}); every beta must satisfy 0 < beta < 1")
    return betas


@register_schedule("linear")
def linear_schedule(timesteps, beta_start=1e-4, beta_end=0.02):
    """DDPM's linear betas (Ho et al. 2020), rescaled to T steps as in Nichol & Dhariwal 2021.

    ``beta_t = linspace(beta_start * 1000 / T, beta_end * 1000 / T, T)[t]``: for T = 1000 these
    are DDPM's betas; other T keep the product ``T * beta`` (hence the final noise level) about
    the same. The scaled ``beta_end`` must stay below 1, i.e. T > 1000 * beta_end (T > 20 with
    the defaults); otherwise :func:`get_schedule` raises.
    """
    scale = 1000.0 / timesteps
    return torch.linspace(beta_start * scale, beta_end * scale, timesteps, dtype=torch.float64)


def betas_from_alpha_bar(alpha_bar, timesteps, max_beta=0.999):
    """Discretize a continuous ``alpha_bar(u)``, u in [0, 1] with alpha_bar(0) = 1, into T betas:
    ``beta_t = min(1 - alpha_bar((t + 1) / T) / alpha_bar(t / T), max_beta)``.

    Clipping at ``max_beta`` avoids beta = 1 (alpha_bar(1) = 0) at the last step.
    """
    u = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    abar = alpha_bar(u)
    return (1.0 - abar[1:] / abar[:-1]).clamp(max=max_beta)


@register_schedule("cosine")
def cosine_schedule(timesteps, s=0.008, max_beta=0.999):
    """Cosine schedule of Nichol & Dhariwal 2021 ("Improved DDPM"), Eq. 17.

    ``alpha_bar(u) = f(u) / f(0)`` with ``f(u) = cos^2(pi/2 * (u + s) / (1 + s))``, u = t / T;
    betas by :func:`betas_from_alpha_bar` (clipped at ``max_beta`` = 0.999 as in the paper). The
    offset ``s`` = 0.008 keeps beta_0 from being vanishingly small.
    """
    def alpha_bar(u):
        f = torch.cos((u + s) / (1 + s) * math.pi / 2) ** 2
        return f / math.cos(s / (1 + s) * math.pi / 2) ** 2

    return betas_from_alpha_bar(alpha_bar, timesteps, max_beta)


@register_schedule("sigmoid")
def sigmoid_schedule(timesteps, start=-3.0, end=3.0, tau=1.0, clip_min=1e-9, max_beta=0.999):
    """Sigmoid schedule of Jabri et al. 2022 ("Scalable Adaptive Computation for Iterative
    Generation", RIN), also studied by Chen 2023 ("On the Importance of Noise Scheduling").

    ``alpha_bar(u) = clip((sigmoid(end / tau) - sigmoid((u * (end - start) + start) / tau))
    / (sigmoid(end / tau) - sigmoid(start / tau)), clip_min, 1)``, u = t / T: the part of a
    sigmoid between ``start`` and ``end``, flipped to fall from 1 to 0 (``tau`` is a
    temperature; a narrower [start, end] or a larger tau makes the curve closer to linear).
    ``clip_min`` keeps alpha_bar positive. Betas by :func:`betas_from_alpha_bar`. Defaults:
    start = -3, end = 3, tau = 1.
    """
    if not end > start or not tau > 0:
        raise ValueError(f"sigmoid schedule: need end > start and tau > 0, got start={start}, "
                         f"end={end}, tau={tau}")
    v_start = torch.sigmoid(torch.tensor(start / tau, dtype=torch.float64))
    v_end = torch.sigmoid(torch.tensor(end / tau, dtype=torch.float64))

    def alpha_bar(u):
        v = torch.sigmoid((u * (end - start) + start) / tau)
        return ((v_end - v) / (v_end - v_start)).clamp(clip_min, 1.0)

    return betas_from_alpha_bar(alpha_bar, timesteps, max_beta)


def schedule_tensors(betas):
    """Everything the forward process, the losses and the samplers need, from the betas.

    Returns a dict of float64 tensors of shape (T,):
    ``betas``, ``alphas`` = 1 - betas, ``alphas_cumprod`` (alpha_bar_t), ``alphas_cumprod_prev``
    (alpha_bar_{t-1}, with alpha_bar_{-1} = 1), ``sqrt_alphas_cumprod``,
    ``sqrt_one_minus_alphas_cumprod``, ``snr`` = alpha_bar / (1 - alpha_bar), and the DDPM
    posterior ``q(x_{t-1} | x_t, x_0) = N(coef1 * x_0 + coef2 * x_t, posterior_variance)``:
    ``posterior_variance`` = beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t),
    ``posterior_log_variance_clipped`` (log of it with the t = 0 entry, which is 0, replaced by
    the t = 1 entry), ``posterior_mean_coef1`` = beta_t sqrt(alpha_bar_{t-1}) / (1 - alpha_bar_t)
    and ``posterior_mean_coef2`` = sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t).
    """
    betas = torch.as_tensor(betas, dtype=torch.float64)
    alphas = 1.0 - betas
    abar = torch.cumprod(alphas, dim=0)
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    posterior_variance = betas * (1.0 - abar_prev) / (1.0 - abar)
    log_var = torch.log(posterior_variance.clamp(min=1e-20))
    if len(betas) > 1:
        log_var = torch.cat([log_var[1:2], log_var[1:]])
    return {
        "betas": betas,
        "alphas": alphas,
        "alphas_cumprod": abar,
        "alphas_cumprod_prev": abar_prev,
        "sqrt_alphas_cumprod": abar.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - abar).sqrt(),
        "snr": abar / (1.0 - abar),
        "posterior_variance": posterior_variance,
        "posterior_log_variance_clipped": log_var,
        "posterior_mean_coef1": betas * abar_prev.sqrt() / (1.0 - abar),
        "posterior_mean_coef2": alphas.sqrt() * (1.0 - abar_prev) / (1.0 - abar),
    }
