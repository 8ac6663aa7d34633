"""``GaussianDiffusion``: the DDPM forward process, training loss and samplers around any
time-conditioned denoiser, at any number of spatial dims."""
import numbers

import torch
import torch.nn.functional as F
from torch import nn

from . import samplers
from .schedules import get_schedule, schedule_tensors

PREDICTION_TYPES = ("epsilon", "sample", "v")
LOSS_TYPES = ("mse", "l1")
_WHERE = "ndops.models.diffusion.GaussianDiffusion"


def _per_sample(values, t, x):
    """``values[t]`` shaped (B, 1, ..., 1) to broadcast against ``x``, in x's dtype."""
    return values[t].to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))


def _parse_schedule(schedule):
    """``"name"`` or ``("name", {kwargs})`` -> (name, kwargs)."""
    if isinstance(schedule, str):
        return schedule, {}
    if (isinstance(schedule, (tuple, list)) and len(schedule) == 2
            and isinstance(schedule[0], str) and isinstance(schedule[1], dict)):
        return schedule[0], dict(schedule[1])
    raise ValueError(f"{_WHERE}: schedule must be a name or (name, {{kwargs}}), got {schedule!r}")


class GaussianDiffusion(nn.Module):
    """Gaussian diffusion (Ho et al. 2020) around a denoiser, for data of any number of dims.

    The forward process noises ``x0`` as ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``
    (``abar`` = ``alphas_cumprod`` of the schedule, t = 0 .. T-1). The denoiser learns to
    predict, from ``(x_t, t)``, one of: ``"epsilon"`` (the noise), ``"sample"`` (x0) or ``"v"``
    (``sqrt(abar_t) eps - sqrt(1 - abar_t) x0``, Salimans & Ho 2022).

    Args:
        model: the denoiser, called ``model(x_t, t)`` or, with class labels, ``model(x_t, t, y)``
            where x_t is (B, C, *spatial), t a (B,) int64 tensor of timesteps in [0, T) and y a
            (B,) int64 tensor; it returns a tensor of x_t's shape. ``model(x_t, t)`` must mean
            "no class" for class-conditioned models (classifier-free guidance relies on it).
            Any ``ndops.models`` time-conditioned UNet or ResNet denoiser fits.
        timesteps: T, the number of diffusion steps.
        schedule: a registered schedule name (``"linear"``, ``"cosine"``, ``"sigmoid"``, see
            :mod:`.schedules`) or ``(name, {kwargs})``.
        prediction: what the model predicts: ``"epsilon"``, ``"sample"`` or ``"v"``.
        loss: ``"mse"`` or ``"l1"`` between the model output and its target.
        min_snr_gamma: if set (5 is the paper's choice), weight each sample's loss by the
            Min-SNR-gamma strategy (Hang et al. 2023): ``min(SNR_t, gamma)`` on the x0 scale,
            i.e. ``min(SNR, gamma) / SNR`` for epsilon, ``min(SNR, gamma)`` for sample and
            ``min(SNR, gamma) / (SNR + 1)`` for v prediction, with SNR = abar / (1 - abar).
        cond_drop_prob: in training mode, :meth:`loss` replaces each sample's class label by
            "no class" with this probability, which trains the unconditional model that
            classifier-free guidance needs (Ho & Salimans 2022; 0.1-0.2 is usual).
        clip_denoised: default of :meth:`sample`'s ``clip_denoised``: clamp the predicted x0 to
            [-1, 1] at every sampling step (data must then be scaled to [-1, 1]).
        null_label: how "no class" reaches a class-conditioned model. None (default): the
            model is called without y (``model(x_t, t)``), so a batch with some labels dropped
            is split in two calls. An int (ndops' UNet and ResNetDenoiser accept -1): dropped
            labels are set to it and one call serves the whole batch; guided sampling then
            evaluates the conditional and unconditional halves in one call of batch 2B.

    The schedule tensors (:func:`.schedules.schedule_tensors`) are float32 buffers, e.g.
    ``diffusion.alphas_cumprod``; they are not saved in the state dict (the constructor
    arguments, :attr:`config`, rebuild them), so ``state_dict()`` holds the model's weights
    under ``model.``. ``forward(x0, y)`` is :meth:`loss`, so the wrapper trains under DDP.

    Example::

        net = UNet(2, 3, 3, channels=(32, 64), time_conditioning=True)
        diffusion = GaussianDiffusion(net, timesteps=1000, schedule="cosine", prediction="v")
        loss = diffusion.loss(x0)            # x0: (B, 3, H, W) scaled to [-1, 1]
        loss.backward()
        images = diffusion.sample((16, 3, 32, 32), sampler="ddim", steps=50)
    """

    def __init__(self, model, timesteps=1000, schedule="cosine", prediction="epsilon", loss="mse",
                 min_snr_gamma=None, cond_drop_prob=0.0, clip_denoised=True, null_label=None):
        super().__init__()
        if not callable(model):
            raise ValueError(f"{_WHERE}: model must be callable as model(x, t[, y]), got "
                             f"{type(model).__name__}")
        in_ch, out_ch = getattr(model, "in_channels", None), getattr(model, "out_channels", None)
        if in_ch is not None and out_ch is not None and in_ch != out_ch:
            raise ValueError(f"{_WHERE}: model must return x's channels, but its out_channels "
                             f"({out_ch}) differs from its in_channels ({in_ch})")
        if prediction not in PREDICTION_TYPES:
            raise ValueError(f"{_WHERE}: prediction must be one of {PREDICTION_TYPES}, got "
                             f"{prediction!r}")
        if loss not in LOSS_TYPES:
            raise ValueError(f"{_WHERE}: loss must be one of {LOSS_TYPES}, got {loss!r}")
        if min_snr_gamma is not None and not (isinstance(min_snr_gamma, numbers.Real)
                                              and min_snr_gamma > 0):
            raise ValueError(f"{_WHERE}: min_snr_gamma must be None or a number > 0, got "
                             f"{min_snr_gamma!r}")
        if not (isinstance(cond_drop_prob, numbers.Real) and 0 <= cond_drop_prob <= 1):
            raise ValueError(f"{_WHERE}: cond_drop_prob must be in [0, 1], got {cond_drop_prob!r}")
        if null_label is not None and (not isinstance(null_label, numbers.Integral)
                                       or isinstance(null_label, bool)):
            raise ValueError(f"{_WHERE}: null_label must be None or an int, got {null_label!r}")
        name, schedule_kwargs = _parse_schedule(schedule)
        betas = get_schedule(name, timesteps, **schedule_kwargs)

        self.model = model
        self.num_timesteps = int(timesteps)
        self.schedule = name
        self.schedule_kwargs = schedule_kwargs
        self.prediction = prediction
        self.loss_type = loss
        self.min_snr_gamma = None if min_snr_gamma is None else float(min_snr_gamma)
        self.cond_drop_prob = float(cond_drop_prob)
        self.clip_denoised = bool(clip_denoised)
        self.null_label = None if null_label is None else int(null_label)

        tensors = schedule_tensors(betas)
        tensors["loss_weight"] = self._min_snr_weights(tensors["snr"])
        # float64 copy on the CPU: samplers take per-step coefficients from it as Python floats.
        self.alphas_cumprod_f64 = tensors["alphas_cumprod"]
        for key, value in tensors.items():
            self.register_buffer(key, value.float(), persistent=False)

    def _min_snr_weights(self, snr):
        """Per-timestep loss weights (float64, (T,)): Min-SNR-gamma on the x0 scale, or ones."""
        if self.min_snr_gamma is None:
            return torch.ones_like(snr)
        clipped = snr.clamp(max=self.min_snr_gamma)
        if self.prediction == "epsilon":   # |eps error|^2 = SNR * |x0 error|^2
            return clipped / snr
        if self.prediction == "v":         # |v error|^2 = (SNR + 1) * |x0 error|^2
            return clipped / (snr + 1)
        return clipped

    @property
    def config(self):
        """The constructor arguments except ``model`` (JSON-serializable)."""
        schedule = self.schedule if not self.schedule_kwargs else [self.schedule,
                                                                    self.schedule_kwargs]
        return {"timesteps": self.num_timesteps, "schedule": schedule,
                "prediction": self.prediction, "loss": self.loss_type,
                "min_snr_gamma": self.min_snr_gamma, "cond_drop_prob": self.cond_drop_prob,
                "clip_denoised": self.clip_denoised, "null_label": self.null_label}

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())

    # ----- argument checks -----
    def _check_timesteps(self, t, x):
        if not isinstance(t, torch.Tensor) or t.shape != (x.shape[0],) or t.is_floating_point():
            raise ValueError(f"{_WHERE}: t must be an int tensor of shape ({x.shape[0]},) (one "
                             f"timestep per sample), got {t!r}"[:300])
        if not torch.compiler.is_compiling() and t.numel() and (
                t.min() < 0 or t.max() >= self.num_timesteps):
            raise ValueError(f"{_WHERE}: t must lie in [0, {self.num_timesteps}), got values in "
                             f"[{t.min().item()}, {t.max().item()}]")

    def _check_labels(self, y, batch):
        if y is None:
            return
        if getattr(self.model, "num_classes", 0) is None:
            raise ValueError(f"{_WHERE}: y was given but the model is not class-conditioned "
                             f"(model.num_classes is None)")
        if not isinstance(y, torch.Tensor) or y.shape != (batch,) or y.is_floating_point():
            raise ValueError(f"{_WHERE}: y must be an int tensor of shape ({batch},) of class "
                             f"labels, got {y!r}"[:300])

    # ----- forward process and conversions between parameterizations -----
    def q_sample(self, x0, t, noise=None, generator=None):
        """Draw ``x_t ~ q(x_t | x0) = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``.

        x0: (B, ...); t: (B,) int timesteps; noise: x0's shape (drawn with ``generator`` if None).
        """
        self._check_timesteps(t, x0)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        elif noise.shape != x0.shape:
            raise ValueError(f"{_WHERE}: noise must have x0's shape {tuple(x0.shape)}, got "
                             f"{tuple(noise.shape)}")
        return (_per_sample(self.sqrt_alphas_cumprod, t, x0) * x0
                + _per_sample(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise)

    def q_posterior(self, x0, x_t, t):
        """Mean, variance and clipped log variance of ``q(x_{t-1} | x_t, x0)`` (DDPM Eq. 7)."""
        mean = (_per_sample(self.posterior_mean_coef1, t, x_t) * x0
                + _per_sample(self.posterior_mean_coef2, t, x_t) * x_t)
        return (mean, _per_sample(self.posterior_variance, t, x_t),
                _per_sample(self.posterior_log_variance_clipped, t, x_t))

    def _coefficients(self, t, x):
        return (_per_sample(self.sqrt_alphas_cumprod, t, x),
                _per_sample(self.sqrt_one_minus_alphas_cumprod, t, x))

    def x0_from_eps(self, x_t, t, eps):
        """x0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)."""
        a, s = self._coefficients(t, x_t)
        return (x_t - s * eps) / a

    def eps_from_x0(self, x_t, t, x0):
        """eps = (x_t - sqrt(abar) x0) / sqrt(1 - abar)."""
        a, s = self._coefficients(t, x_t)
        return (x_t - a * x0) / s

    def v_from_x0_eps(self, x0, t, eps):
        """v = sqrt(abar) eps - sqrt(1 - abar) x0 (the "v" prediction target)."""
        a, s = self._coefficients(t, x0)
        return a * eps - s * x0

    def x0_from_v(self, x_t, t, v):
        """x0 = sqrt(abar) x_t - sqrt(1 - abar) v."""
        a, s = self._coefficients(t, x_t)
        return a * x_t - s * v

    def eps_from_v(self, x_t, t, v):
        """eps = sqrt(1 - abar) x_t + sqrt(abar) v."""
        a, s = self._coefficients(t, x_t)
        return s * x_t + a * v

    def target(self, x0, t, noise):
        """What the model is trained to output for ``x_t = q_sample(x0, t, noise)``."""
        if self.prediction == "epsilon":
            return noise
        if self.prediction == "sample":
            return x0
        return self.v_from_x0_eps(x0, t, noise)

    def output_to_eps_x0(self, x_t, t, output):
        """Model output (of this wrapper's prediction type) -> (eps, x0)."""
        if self.prediction == "epsilon":
            return output, self.x0_from_eps(x_t, t, output)
        if self.prediction == "sample":
            return self.eps_from_x0(x_t, t, output), output
        return self.eps_from_v(x_t, t, output), self.x0_from_v(x_t, t, output)

    # ----- the denoiser -----
    def _call_model(self, x_t, t, y=None):
        out = self.model(x_t, t) if y is None else self.model(x_t, t, y)
        if not isinstance(out, torch.Tensor) or out.shape != x_t.shape:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"{_WHERE}: the model must return a tensor of x_t's shape "
                             f"{tuple(x_t.shape)}, got {got}")
        return out

    def model_output(self, x_t, t, y=None, guidance_scale=1.0):
        """The model's raw output, with classifier-free guidance when ``guidance_scale != 1``:
        ``uncond + guidance_scale * (cond - uncond)`` where cond = model(x_t, t, y) and uncond =
        model(x_t, t) (or, with ``null_label`` set, both halves of one call with labels
        ``cat([y, null_label])``). Guiding the raw output equals guiding eps or x0: the
        conversions are affine in it."""
        if guidance_scale == 1.0:
            return self._call_model(x_t, t, y)
        if y is None:
            raise ValueError(f"{_WHERE}: guidance_scale={guidance_scale} needs class labels y "
                             f"(classifier-free guidance); pass y or use guidance_scale=1.0")
        if self.null_label is None:
            cond = self._call_model(x_t, t, y)
            uncond = self._call_model(x_t, t)
        else:
            both = self._call_model(torch.cat([x_t, x_t]), torch.cat([t, t]),
                                    torch.cat([y, torch.full_like(y, self.null_label)]))
            cond, uncond = both.chunk(2)
        return uncond + guidance_scale * (cond - uncond)

    def predict(self, x_t, t, y=None, guidance_scale=1.0, clip_denoised=False):
        """(eps, x0) predicted at ``(x_t, t)``. With ``clip_denoised`` x0 is clamped to
        [-1, 1] and eps re-derived from the clamped x0, so both stay consistent with x_t."""
        output = self.model_output(x_t, t, y, guidance_scale)
        eps, x0 = self.output_to_eps_x0(x_t, t, output)
        if clip_denoised:
            x0 = x0.clamp(-1.0, 1.0)
            eps = self.eps_from_x0(x_t, t, x0)
        return eps, x0

    def _output_with_label_dropout(self, x_t, t, y, generator):
        """Model output where each label is dropped (model called without y) with probability
        ``cond_drop_prob``: replaced by ``null_label`` if set, else the batch is split so any
        ``model(x, t[, y])`` works."""
        drop = torch.rand(y.shape, generator=generator, device=y.device) < self.cond_drop_prob
        if self.null_label is not None:
            return self._call_model(x_t, t, y.masked_fill(drop, self.null_label))
        if not drop.any():
            return self._call_model(x_t, t, y)
        if drop.all():
            return self._call_model(x_t, t)
        keep_idx, drop_idx = (~drop).nonzero().squeeze(1), drop.nonzero().squeeze(1)
        out = torch.cat([self._call_model(x_t[keep_idx], t[keep_idx], y[keep_idx]),
                         self._call_model(x_t[drop_idx], t[drop_idx])])
        return out[torch.argsort(torch.cat([keep_idx, drop_idx]))]

    # ----- training -----
    def loss(self, x0, y=None, t=None, noise=None, generator=None, reduction="mean"):
        """Training loss on a batch ``x0`` (B, C, *spatial), scaled like the data to sample.

        Draws t uniformly in [0, T) and the noise (or takes the given ones; ``generator`` makes
        the draws reproducible), noises x0, and compares the model output with its target
        (noise, x0 or v) by ``loss`` ("mse" / "l1"), averaged per sample and weighted by the
        Min-SNR weights if enabled. In training mode, labels ``y`` (B,) are dropped with
        probability ``cond_drop_prob``. Returns the batch mean, or the (B,) per-sample losses
        with ``reduction="none"``.
        """
        if not isinstance(x0, torch.Tensor) or x0.dim() < 3 or not x0.is_floating_point():
            raise ValueError(f"{_WHERE}: x0 must be a floating tensor (B, C, *spatial) with at "
                             f"least one spatial dim, got {getattr(x0, 'shape', x0)!r}")
        if reduction not in ("mean", "none"):
            raise ValueError(f"{_WHERE}: reduction must be 'mean' or 'none', got {reduction!r}")
        batch = x0.shape[0]
        self._check_labels(y, batch)
        if t is None:
            t = torch.randint(0, self.num_timesteps, (batch,), generator=generator,
                              device=x0.device)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = self.q_sample(x0, t, noise)
        if y is not None and self.training and self.cond_drop_prob > 0:
            output = self._output_with_label_dropout(x_t, t, y, generator)
        else:
            output = self._call_model(x_t, t, y)
        target = self.target(x0, t, noise)
        distance = F.mse_loss if self.loss_type == "mse" else F.l1_loss
        per_sample = distance(output.float(), target.float(), reduction="none").flatten(1).mean(1)
        per_sample = per_sample * self.loss_weight[t]
        return per_sample.mean() if reduction == "mean" else per_sample

    def forward(self, x0, y=None, **kwargs):
        """Same as :meth:`loss`."""
        return self.loss(x0, y, **kwargs)

    # ----- sampling -----
    def sample(self, shape, sampler="ddpm", steps=None, eta=None, y=None, guidance_scale=1.0,
               generator=None, return_trajectory=False, progress=False, clip_denoised=None,
               x_T=None, device=None, dtype=None):
        """Generate samples of ``shape`` (B, C, *spatial) from pure noise.

        sampler: ``"ddpm"`` (ancestral sampling with the posterior variance) or ``"ddim"``
            (Song et al. 2021; ``eta`` = 0 by default: deterministic given x_T).
        steps: number of denoising steps, 1 .. T (default T); fewer steps use the evenly
            spaced subsequence :func:`.samplers.timestep_sequence` (DDPM then runs the
            respaced chain of Nichol & Dhariwal 2021).
        eta: DDIM's noise scale (0 deterministic, 1 = DDPM's variance); DDIM only.
        y: (B,) class labels for class-conditioned models; ``guidance_scale`` != 1 applies
            classifier-free guidance (model called with and without y).
        generator: torch.Generator for x_T and every noise draw (reproducible sampling).
        return_trajectory: also return the stacked states (steps + 1, *shape), x_T first.
        progress: show a tqdm progress bar (needs tqdm).
        clip_denoised: clamp predicted x0 to [-1, 1] (default: the constructor's setting).
        x_T: start from this noise instead of drawing it. device / dtype: of the samples
            (default: the buffers' device, the model parameters' dtype or float32).

        The wrapper runs in eval mode under ``torch.no_grad()``; each submodule's previous
        train/eval mode is restored afterwards. Returns the samples (shape ``shape``), or
        ``(samples, trajectory)``.
        """
        modes = [(module, module.training) for module in self.modules()]
        self.eval()
        try:
            with torch.no_grad():
                return samplers.sample(
                    self, shape, sampler=sampler, steps=steps, eta=eta, y=y,
                    guidance_scale=guidance_scale, generator=generator,
                    return_trajectory=return_trajectory, progress=progress,
                    clip_denoised=self.clip_denoised if clip_denoised is None else clip_denoised,
                    x_T=x_T, device=device, dtype=dtype)
        finally:
            for module, was_training in modes:
                module.training = was_training
