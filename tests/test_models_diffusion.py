"""ndops.models.diffusion: schedules, forward process, losses, DDPM/DDIM sampling, guidance."""
import math

import pytest
import torch
from torch import nn

from ndops.models.diffusion import (GaussianDiffusion, available_schedules, get_schedule,
                                    register_schedule, schedule_tensors, timestep_sequence)


class TinyDenoiser(nn.Module):
    """Per-position MLP over channels with a timestep (and optional class) embedding: works at
    any N and channel count, and records every call (labels, grad mode, train mode)."""

    def __init__(self, channels, num_classes=None, hidden=32):
        super().__init__()
        self.in_channels = self.out_channels = channels
        self.num_classes = num_classes
        self.inp = nn.Linear(channels, hidden)
        self.time = nn.Linear(8, hidden)
        self.label = None if num_classes is None else nn.Embedding(num_classes + 1, hidden)
        self.out = nn.Linear(hidden, channels)
        self.calls = []

    def forward(self, x, t, y=None):
        self.calls.append({"y": None if y is None else y.clone(), "batch": x.shape[0],
                           "grad": torch.is_grad_enabled(), "training": self.training})
        freqs = torch.exp(-torch.arange(4, dtype=x.dtype) * 2.0)
        angles = t.to(x.dtype)[:, None] * freqs
        emb = self.time(torch.cat([angles.sin(), angles.cos()], dim=1))
        if self.label is not None:
            labels = torch.full_like(t, self.num_classes) if y is None else y
            emb = emb + self.label(torch.where(labels < 0, self.num_classes, labels))
        emb = emb.reshape(x.shape[0], *([1] * (x.dim() - 2)), -1)
        h = torch.nn.functional.silu(self.inp(x.movedim(1, -1)) + emb)
        return self.out(h).movedim(-1, 1)


def make_diffusion(channels=2, timesteps=20, num_classes=None, **kw):
    return GaussianDiffusion(TinyDenoiser(channels, num_classes), timesteps=timesteps, **kw)


# ----- schedules -----
def direct_betas(name, T):
    """The schedule formulas written out step by step with Python floats."""
    if name == "linear":
        lo, hi = 1e-4 * 1000 / T, 0.02 * 1000 / T
        return [lo + (hi - lo) * i / (T - 1) for i in range(T)]
    if name == "cosine":
        def abar(u):
            return math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
    else:
        def sig(z):
            return 1 / (1 + math.exp(-z))

        def abar(u):
            return max((sig(3) - sig(6 * u - 3)) / (sig(3) - sig(-3)), 1e-9)
    return [min(1 - abar((i + 1) / T) / abar(i / T), 0.999) for i in range(T)]


@pytest.mark.parametrize("name", ["linear", "cosine", "sigmoid"])
@pytest.mark.parametrize("T", [50, 1000])
def test_schedules_match_their_formulas(name, T):
    betas = get_schedule(name, T)
    assert betas.dtype == torch.float64 and betas.shape == (T,)
    torch.testing.assert_close(betas, torch.tensor(direct_betas(name, T), dtype=torch.float64),
                               rtol=1e-10, atol=1e-12)
    abar = schedule_tensors(betas)["alphas_cumprod"]
    assert (abar > 0).all() and (abar < 1).all() and (abar[1:] < abar[:-1]).all()


def test_linear_schedule_is_ddpm_at_1000_steps():
    betas = get_schedule("linear", 1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)


def test_schedule_tensors_match_definitions():
    s = schedule_tensors(get_schedule("cosine", 30))
    abar = torch.cumprod(1 - s["betas"], 0)
    torch.testing.assert_close(s["alphas_cumprod"], abar)
    torch.testing.assert_close(s["alphas_cumprod_prev"][1:], abar[:-1])
    assert s["alphas_cumprod_prev"][0] == 1
    torch.testing.assert_close(s["snr"], abar / (1 - abar))
    t = 7  # posterior of x_{t-1} given x_t and x_0 from Bayes' rule on the two Gaussians
    a_prev, beta = abar[t - 1], s["betas"][t]
    precision = 1 / (1 - a_prev) + (1 - beta) / beta
    torch.testing.assert_close(s["posterior_variance"][t], 1 / precision)
    torch.testing.assert_close(s["posterior_mean_coef1"][t],
                               a_prev.sqrt() / (1 - a_prev) / precision)
    torch.testing.assert_close(s["posterior_mean_coef2"][t], (1 - beta).sqrt() / beta / precision)
    torch.testing.assert_close(s["posterior_log_variance_clipped"][0],
                               s["posterior_variance"][1].log())


def test_schedule_registry():
    assert {"linear", "cosine", "sigmoid"} <= set(available_schedules())

    @register_schedule("test_constant")
    def constant(timesteps, beta=0.01):
        return torch.full((timesteps,), beta)

    torch.testing.assert_close(get_schedule("test_constant", 5, beta=0.02),
                               torch.full((5,), 0.02, dtype=torch.float64))
    diffusion = make_diffusion(schedule=("test_constant", {"beta": 0.05}), timesteps=8)
    assert diffusion.config["schedule"] == ["test_constant", {"beta": 0.05}]
    with pytest.raises(ValueError, match="already exists"):
        register_schedule("test_constant")(constant)
    with pytest.raises(ValueError, match="outside"):
        get_schedule("test_constant", 5, beta=1.0)
    with pytest.raises(ValueError, match="unknown schedule 'quadratic'.*cosine"):
        get_schedule("quadratic", 10)
    with pytest.raises(ValueError, match="bad keyword"):
        get_schedule("cosine", 10, offset=0.1)
    with pytest.raises(ValueError, match="timesteps"):
        get_schedule("cosine", 0)
    with pytest.raises(ValueError, match="outside"):  # scaled beta_end = 0.02 * 1000 / 10 = 2
        get_schedule("linear", 10)


# ----- forward process, parameterizations, loss weights -----
def test_q_sample_statistics():
    diffusion = make_diffusion(timesteps=100)
    x0 = torch.full((20000, 1, 8), 0.5)
    for step in (0, 50, 99):
        t = torch.full((x0.shape[0],), step)
        x_t = diffusion.q_sample(x0, t)
        abar = diffusion.alphas_cumprod[step].item()
        assert x_t.mean().item() == pytest.approx(0.5 * math.sqrt(abar), abs=0.01)
        assert x_t.std().item() == pytest.approx(math.sqrt(1 - abar), rel=0.01)


def test_parameterizations_round_trip():
    diffusion = make_diffusion(timesteps=50)
    x0, eps = torch.randn(6, 3, 4, 5), torch.randn(6, 3, 4, 5)
    t = torch.tensor([0, 1, 10, 25, 40, 49])
    x_t = diffusion.q_sample(x0, t, eps)
    v = diffusion.v_from_x0_eps(x0, t, eps)
    tol = dict(rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(diffusion.x0_from_eps(x_t, t, eps), x0, **tol)
    torch.testing.assert_close(diffusion.eps_from_x0(x_t, t, x0), eps, **tol)
    torch.testing.assert_close(diffusion.x0_from_v(x_t, t, v), x0, **tol)
    torch.testing.assert_close(diffusion.eps_from_v(x_t, t, v), eps, **tol)
    for prediction in ("epsilon", "sample", "v"):
        diffusion.prediction = prediction
        got_eps, got_x0 = diffusion.output_to_eps_x0(x_t, t, diffusion.target(x0, t, eps))
        torch.testing.assert_close(got_eps, eps, **tol)
        torch.testing.assert_close(got_x0, x0, **tol)


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v"])
def test_min_snr_weighting_is_min_snr_times_x0_error(prediction):
    gamma = 5.0
    output = torch.randn(5, 2, 6)
    diffusion = GaussianDiffusion(lambda x, t: output, timesteps=40, prediction=prediction,
                                  min_snr_gamma=gamma)
    snr = diffusion.snr
    expected = {"epsilon": snr.clamp(max=gamma) / snr, "sample": snr.clamp(max=gamma),
                "v": snr.clamp(max=gamma) / (snr + 1)}[prediction]
    torch.testing.assert_close(diffusion.loss_weight, expected)
    # Whatever the parameterization, the weighted loss is min(SNR, gamma) * |x0 error|^2.
    x0, noise = torch.randn(5, 2, 6), torch.randn(5, 2, 6)
    t = torch.tensor([0, 3, 10, 25, 39])
    per_sample = diffusion.loss(x0, t=t, noise=noise, reduction="none")
    _, x0_pred = diffusion.output_to_eps_x0(diffusion.q_sample(x0, t, noise), t, output)
    x0_loss = ((x0_pred - x0) ** 2).flatten(1).mean(1) * snr[t].clamp(max=gamma)
    torch.testing.assert_close(per_sample, x0_loss, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("loss", ["mse", "l1"])
def test_loss_compares_output_with_target(loss):
    output = torch.randn(3, 2, 4, 4)
    diffusion = GaussianDiffusion(lambda x, t: output, timesteps=10, prediction="v", loss=loss)
    x0, noise, t = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4), torch.tensor([1, 5, 9])
    diff = output - diffusion.v_from_x0_eps(x0, t, noise)
    expected = (diff ** 2 if loss == "mse" else diff.abs()).mean()
    torch.testing.assert_close(diffusion.loss(x0, t=t, noise=noise), expected)


@pytest.mark.parametrize("prediction", ["epsilon", "sample", "v"])
def test_training_steps_lower_the_loss(prediction):
    diffusion = make_diffusion(channels=2, timesteps=50, prediction=prediction)
    x0 = torch.randn(8, 2, 5, 5).clamp(-1, 1)
    g = torch.Generator().manual_seed(1)
    t = torch.randint(0, 50, (8,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    optimizer = torch.optim.Adam(diffusion.parameters(), lr=1e-2)
    before = diffusion.loss(x0, t=t, noise=noise).item()
    for _ in range(10):
        optimizer.zero_grad()
        loss = diffusion(x0, t=t, noise=noise)
        loss.backward()
        optimizer.step()
    assert diffusion.loss(x0, t=t, noise=noise).item() < 0.9 * before


# ----- sampling -----
@pytest.mark.parametrize("sampler,steps", [("ddpm", None), ("ddpm", 4), ("ddim", 5)])
@pytest.mark.parametrize("shape", [(2, 1, 7), (1, 3, 4, 5), (3, 2, 3, 4, 2), (2, 5, 2, 3, 2, 3)])
def test_sample_shapes(sampler, steps, shape):
    diffusion = make_diffusion(channels=shape[1], timesteps=10)
    out = diffusion.sample(shape, sampler=sampler, steps=steps)
    assert out.shape == shape and torch.isfinite(out).all() and not out.requires_grad
    assert out.abs().max() <= 1 + 1e-6  # the last step returns the clipped x0 prediction


def test_trajectory_and_x_T():
    diffusion = make_diffusion(channels=3, timesteps=12)
    x_T = torch.randn(2, 3, 4, 4)
    out, trajectory = diffusion.sample(x_T.shape, sampler="ddim", steps=5, x_T=x_T,
                                       return_trajectory=True, progress=True)
    assert trajectory.shape == (6, 2, 3, 4, 4)
    assert torch.equal(trajectory[0], x_T) and torch.equal(trajectory[-1], out)


def test_ddim_eta0_is_deterministic_given_the_generator():
    diffusion = make_diffusion(channels=2, timesteps=30)

    def run(seed, **kw):
        return diffusion.sample((2, 2, 5, 3), sampler="ddim", steps=6,
                                generator=torch.Generator().manual_seed(seed), **kw)

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))
    assert not torch.equal(run(0, eta=1.0), run(0, eta=0.5))


@pytest.mark.parametrize("steps", [None, 7])
def test_ddim_with_eta1_equals_ddpm(steps):
    diffusion = make_diffusion(channels=2, timesteps=20)
    ddpm = diffusion.sample((3, 2, 4), sampler="ddpm", steps=steps,
                            generator=torch.Generator().manual_seed(3))
    ddim = diffusion.sample((3, 2, 4), sampler="ddim", eta=1.0, steps=steps,
                            generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(ddpm, ddim, rtol=1e-4, atol=1e-5)


def test_ddpm_follows_the_posterior():
    # With a model predicting x0 = 0, each DDPM step is x_{t-1} = coef2 * x_t + sigma * z.
    diffusion = GaussianDiffusion(lambda x, t: torch.zeros_like(x), timesteps=4,
                                  prediction="sample")
    x_T = torch.randn(2, 1, 3)
    out = diffusion.sample(x_T.shape, x_T=x_T, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)  # x_T is given: the noise draws start at step T-1
    x = x_T
    for t in (3, 2, 1, 0):
        t_batch = torch.full((2,), t)
        mean, variance, _ = diffusion.q_posterior(torch.zeros_like(x), x, t_batch)
        x = mean + variance.sqrt() * torch.randn(x.shape, generator=g) if t > 0 else mean
    torch.testing.assert_close(out, x)


def test_timestep_sequence():
    assert timestep_sequence(10, 10) == list(range(9, -1, -1))
    assert timestep_sequence(1000, 1) == [999]
    assert timestep_sequence(1000, 4) == [999, 666, 333, 0]
    for steps in range(1, 51):
        seq = timestep_sequence(50, steps)
        assert len(set(seq)) == steps and seq[0] == 49 and seq == sorted(seq, reverse=True)


def test_sampling_runs_in_eval_mode_without_grad_and_restores_modes():
    diffusion = make_diffusion(channels=1, timesteps=5)
    diffusion.train()
    diffusion.model.inp.eval()  # a mixed state must come back as it was
    diffusion.sample((1, 1, 3), sampler="ddim", steps=2)
    assert diffusion.model.calls and all(not c["grad"] and not c["training"]
                                         for c in diffusion.model.calls)
    assert diffusion.training and diffusion.model.training and not diffusion.model.inp.training
    diffusion.eval()
    diffusion.sample((1, 1, 3), sampler="ddim", steps=2)
    assert not diffusion.training and torch.is_grad_enabled()


def test_float64_model_samples_float64():
    diffusion = make_diffusion(channels=2, timesteps=5).double()
    assert diffusion.sample((1, 2, 3, 3), sampler="ddim", steps=2).dtype == torch.float64


# ----- classifier-free guidance -----
@pytest.mark.parametrize("null_label", [None, -1])
def test_guidance_calls_the_model_with_and_without_labels(null_label):
    diffusion = make_diffusion(channels=2, timesteps=10, num_classes=3, null_label=null_label)
    y = torch.tensor([0, 2])
    x_t, t = torch.randn(2, 2, 4, 4), torch.tensor([3, 7])
    model = diffusion.model
    cond, uncond = model(x_t, t, y), model(x_t, t)
    model.calls.clear()
    guided = diffusion.model_output(x_t, t, y, guidance_scale=3.0)
    torch.testing.assert_close(guided, uncond + 3.0 * (cond - uncond), rtol=1e-5, atol=1e-5)
    if null_label is None:
        assert [c["y"] is None for c in model.calls] == [False, True]
    else:
        assert len(model.calls) == 1 and model.calls[0]["y"].tolist() == [0, 2, -1, -1]
    model.calls.clear()
    out = diffusion.sample((2, 2, 4, 4), sampler="ddim", steps=3, y=y, guidance_scale=2.0)
    assert out.shape == (2, 2, 4, 4)
    assert len(model.calls) == (6 if null_label is None else 3)
    model.calls.clear()
    diffusion.sample((2, 2, 4, 4), sampler="ddim", steps=3, y=y)  # scale 1: conditional only
    assert len(model.calls) == 3 and all(torch.equal(c["y"], y) for c in model.calls)


@pytest.mark.parametrize("null_label", [None, -1])
def test_label_dropout_in_training(null_label):
    # prediction "sample", x0 = 0 and a model returning its label (-1 when dropped): each
    # sample's loss is its own label squared or 1, which also checks the reassembled order.
    def model(x, t, y=None):
        calls.append(y)
        labels = torch.full((x.shape[0],), -1.0) if y is None else y.float()
        return labels.reshape(-1, 1, 1).expand(x.shape)

    calls = []
    diffusion = GaussianDiffusion(model, timesteps=10, prediction="sample", cond_drop_prob=0.5,
                                  null_label=null_label)
    y = torch.arange(2, 12)
    x0 = torch.zeros(10, 1, 3)
    per_sample = diffusion.loss(x0, y, reduction="none", generator=torch.Generator().manual_seed(0))
    kept = per_sample == y.float() ** 2
    assert (kept | (per_sample == 1)).all() and kept.any() and not kept.all()
    assert len(calls) == (2 if null_label is None else 1)
    calls.clear()
    diffusion.eval()  # no dropout outside training
    assert torch.equal(diffusion.loss(x0, y, reduction="none"), y.float() ** 2)


# ----- bad arguments -----
@pytest.mark.parametrize("kwargs,match", [
    (dict(schedule="quadratic"), "unknown schedule"),
    (dict(schedule=("cosine", 0.01)), "schedule must be"),
    (dict(prediction="x0"), "prediction must be one of"),
    (dict(loss="huber"), "loss must be one of"),
    (dict(min_snr_gamma=-1), "min_snr_gamma"),
    (dict(cond_drop_prob=1.5), "cond_drop_prob"),
    (dict(timesteps=0), "timesteps"),
    (dict(null_label="none"), "null_label"),
])
def test_bad_constructor_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_diffusion(**kwargs)


def test_model_with_other_out_channels_is_rejected():
    model = TinyDenoiser(2)
    model.out_channels = 4
    with pytest.raises(ValueError, match="out_channels"):
        GaussianDiffusion(model)


@pytest.mark.parametrize("kwargs,match", [
    (dict(sampler="euler"), "sampler must be one of"),
    (dict(steps=11), r"steps must be an int in \[1, timesteps=10\]"),
    (dict(steps=0), "steps must be"),
    (dict(sampler="ddpm", eta=0.5), "eta applies to sampler='ddim' only"),
    (dict(sampler="ddim", eta=-1.0), "eta must be"),
    (dict(guidance_scale=2.0), "needs class labels y"),
    (dict(y=torch.tensor([0, 1])), "not class-conditioned"),
    (dict(x_T=torch.randn(1, 2, 4)), "x_T must be"),
])
def test_bad_sample_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_diffusion(channels=2, timesteps=10).sample((2, 2, 4), **kwargs)


def test_bad_shapes_and_timesteps():
    diffusion = make_diffusion(channels=2, timesteps=10)
    with pytest.raises(ValueError, match="shape"):
        diffusion.sample((2, 2))
    with pytest.raises(ValueError, match="in_channels"):
        diffusion.sample((2, 3, 4))
    with pytest.raises(ValueError, match=r"t must lie in \[0, 10\)"):
        diffusion.q_sample(torch.randn(2, 2, 4), torch.tensor([0, 10]))
    with pytest.raises(ValueError, match="x0 must be"):
        diffusion.loss(torch.randn(2, 2))
    with pytest.raises(ValueError, match="y must be"):
        make_diffusion(num_classes=3).loss(torch.randn(2, 2, 4), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="model must return"):
        GaussianDiffusion(lambda x, t: x[:, :1], timesteps=10).loss(torch.randn(2, 2, 4))


def test_config_and_state_dict():
    diffusion = make_diffusion(prediction="v", min_snr_gamma=5, schedule="sigmoid")
    rebuilt = GaussianDiffusion(TinyDenoiser(2), **diffusion.config)
    torch.testing.assert_close(rebuilt.alphas_cumprod, diffusion.alphas_cumprod)
    assert all(key.startswith("model.") for key in diffusion.state_dict())
    rebuilt.load_state_dict(diffusion.state_dict())
    assert "prediction='v'" in repr(diffusion)


# ----- with ndops' denoisers -----
@pytest.mark.parametrize("shape,num_classes", [((2, 2, 9), None), ((2, 1, 4, 3, 4, 3), 3)])
def test_with_time_conditioned_unet(shape, num_classes):
    from ndops.models.unet import UNet

    net = UNet(len(shape) - 2, shape[1], shape[1], channels=(4, 8), norm="group", act="silu",
               time_conditioning=True, num_classes=num_classes)
    diffusion = GaussianDiffusion(net, timesteps=20, prediction="v", cond_drop_prob=0.3,
                                  null_label=None if num_classes is None else -1)
    y = None if num_classes is None else torch.tensor([0, 2])
    diffusion.loss(torch.randn(shape), y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in net.parameters() if p.requires_grad)
    out = diffusion.sample(shape, sampler="ddim", steps=3, y=y,
                           guidance_scale=1.0 if y is None else 2.0)
    assert out.shape == shape and torch.isfinite(out).all() and net.training


def test_with_resnet_denoiser():
    from ndops.models.resnet import ResNetDenoiser

    net = ResNetDenoiser(2, in_channels=3, out_channels=3, channels=8, num_blocks=1,
                         num_classes=2)
    diffusion = GaussianDiffusion(net, timesteps=10, cond_drop_prob=0.5)
    diffusion.loss(torch.randn(2, 3, 5, 6), torch.tensor([0, 1])).backward()
    out = diffusion.sample((2, 3, 5, 6), sampler="ddpm", steps=3, y=torch.tensor([1, 0]),
                           guidance_scale=3.0)
    assert out.shape == (2, 3, 5, 6)
