"""Diffusion training and sampling: :class:`DiffusionTask` for the Trainer, sample grids per
epoch, and sampling (DDPM or DDIM) from a checkpoint without the training script."""
import os

import torch

from .checkpoint import load_checkpoint, load_model
from .images import PROJECTIONS, save_sample_grid
from .tasks import Task, check_inputs, split_batch, unwrap

_WHERE = "ndops.models.training.DiffusionTask"


def _diffusion(model):
    from ndops.models.diffusion import GaussianDiffusion
    inner = unwrap(model)
    if not isinstance(inner, GaussianDiffusion):
        raise ValueError(f"{_WHERE}: the model must be an ndops.models.diffusion."
                         f"GaussianDiffusion wrapping the denoiser, got {type(inner).__name__}")
    return inner


def class_labels(diffusion, num_samples, device):
    """Labels 0, 1, ..., K-1, 0, 1, ... for a class-conditioned denoiser (None otherwise), so a
    grid with K columns shows one class per column."""
    num_classes = getattr(diffusion.model, "num_classes", None)
    if num_classes is None:
        return None
    return torch.arange(num_samples, device=device) % num_classes


def generate(diffusion, num_samples, sample_shape, sampler="ddim", steps=50, eta=None,
             labels=None, guidance_scale=1.0, seed=0):
    """``num_samples`` samples of per-sample shape ``sample_shape`` (C, *spatial) from the
    ``GaussianDiffusion`` model, reproducible through ``seed`` (own generator: the global
    RNG is not touched). Class-conditioned denoisers get ``labels`` (default
    :func:`class_labels`) and classifier-free guidance with ``guidance_scale``."""
    device = diffusion.betas.device
    generator = torch.Generator(device).manual_seed(seed)
    if labels is None:
        labels = class_labels(diffusion, num_samples, device)
    kwargs = {} if labels is None else {"y": labels.to(device),
                                        "guidance_scale": guidance_scale}
    return diffusion.sample((num_samples, *sample_shape), sampler=sampler, steps=steps,
                            eta=eta, generator=generator, **kwargs)


class DiffusionTask(Task):
    """Trains a ``GaussianDiffusion`` (the Trainer's model): batches are ``x0`` or
    ``(x0, labels)`` with x0 (B, C, *spatial) scaled like the samples should be (usually
    [-1, 1]); the loss is ``diffusion.loss(x0, labels)``. Validation reports the same loss
    with fixed noise draws (comparable across epochs).

    Every ``sample_every`` epochs (0 = never) rank 0 draws ``num_samples`` samples with the
    evaluation weights (EMA when on), sampler ``sampler`` ("ddpm" or "ddim") in ``steps``
    steps from the same seed each time, and writes ``samples/epoch_XXXX.png`` in the run
    folder (see :mod:`.images` for how N = 1 and N >= 3 are drawn: ``projection``). A
    class-conditioned denoiser gets labels 0..K-1 repeated, one class per grid column, with
    classifier-free guidance ``guidance_scale``.
    """

    name = "diffusion"
    default_monitor = ("val_loss", "min")

    def __init__(self, sample_every=1, num_samples=16, sampler="ddim", steps=50, eta=None,
                 guidance_scale=1.0, projection="slice", value_range=(-1.0, 1.0), seed=0):
        if isinstance(sample_every, bool) or not isinstance(sample_every, int) \
                or sample_every < 0:
            raise ValueError(f"{_WHERE}: sample_every must be an int >= 0, got "
                             f"{sample_every!r}")
        if sampler not in ("ddpm", "ddim"):
            raise ValueError(f"{_WHERE}: sampler must be 'ddpm' or 'ddim', got {sampler!r}")
        if projection not in PROJECTIONS:
            raise ValueError(f"{_WHERE}: projection must be one of {PROJECTIONS}, got "
                             f"{projection!r}")
        self.sample_every, self.num_samples = sample_every, int(num_samples)
        self.sampler, self.steps, self.eta = sampler, steps, eta
        self.guidance_scale, self.projection = float(guidance_scale), projection
        self.value_range, self.seed = tuple(value_range), int(seed)
        self.sample_shape = None

    def check_batch(self, model, batch):
        diffusion = _diffusion(model)
        x0, labels = split_batch(batch)
        check_inputs(model, x0, getattr(diffusion.model, "in_channels", None))
        if x0.dim() < 3:
            raise ValueError(f"{_WHERE}: x0 must be (B, C, *spatial) with a spatial dim, got "
                             f"{tuple(x0.shape)}")
        if labels is not None and (not torch.is_tensor(labels) or labels.is_floating_point()
                                   or labels.shape != (x0.shape[0],)):
            raise ValueError(f"{_WHERE}: class labels must be a (B,) integer tensor, got "
                             f"{getattr(labels, 'dtype', type(labels).__name__)} "
                             f"{getattr(labels, 'shape', '')}")
        if self.sample_shape is None:
            self.sample_shape = list(x0.shape[1:])

    def preflight(self, model, batch):
        self.check_batch(model, batch)
        x0, labels = split_batch(batch)
        try:
            _diffusion(model).loss(x0, labels)
        except Exception as err:
            raise ValueError(f"{_WHERE}: the diffusion loss fails on a batch of shape "
                             f"{tuple(x0.shape)}: {type(err).__name__}: {err}") from err

    def training_step(self, model, batch):
        x0, labels = split_batch(batch)
        loss = model(x0) if labels is None else model(x0, labels)
        return loss, {"loss": (loss.detach().double() * x0.shape[0], x0.shape[0])}

    def evaluation_step(self, model, batch, generator=None):
        x0, labels = split_batch(batch)
        loss = _diffusion(model).loss(x0, labels, generator=generator)
        return {"loss": (loss.double() * x0.shape[0], x0.shape[0])}

    def predict_step(self, model, batch):
        raise ValueError(f"{_WHERE}: a diffusion model has no per-batch prediction; draw "
                         "samples with ndops.models.training.diffusion.generate(...) or "
                         "sample_from_checkpoint(...)")

    def describe(self):
        return {"name": self.name, "sampler": self.sampler, "steps": self.steps,
                "num_samples": self.num_samples, "projection": self.projection,
                "sample_shape": self.sample_shape}

    def state_dict(self):
        return {"sample_shape": self.sample_shape}

    def load_state_dict(self, state):
        self.sample_shape = state.get("sample_shape", self.sample_shape)

    def on_epoch_end(self, trainer):
        if not (self.sample_every and trainer.epoch % self.sample_every == 0
                and trainer.distributed.is_main and self.sample_shape is not None):
            return
        with trainer.autocast():
            samples = generate(_diffusion(trainer.eval_model()), self.num_samples,
                               self.sample_shape, self.sampler, self.steps, self.eta,
                               guidance_scale=self.guidance_scale, seed=self.seed)
        path = os.path.join(trainer.run_dir, "samples", f"epoch_{trainer.epoch:04d}.png")
        save_sample_grid(samples, path, nrow=grid_columns(trainer.model, self.num_samples),
                         value_range=self.value_range, projection=self.projection)
        trainer.log.message(f"samples written to {path}")


def grid_columns(model, num_samples):
    """Grid width for samples of ``model``: one column per class for class-conditioned
    denoisers (labels from :func:`class_labels`), else None (about square)."""
    num_classes = getattr(_diffusion(model).model, "num_classes", None)
    return num_classes if num_classes and num_classes <= num_samples else None


def sample_from_checkpoint(path, num_samples=16, sampler="ddim", steps=50, eta=None,
                           labels=None, guidance_scale=1.0, seed=0, out=None, use_ema=True,
                           device="cpu", sample_shape=None, projection="slice",
                           value_range=(-1.0, 1.0)):
    """Draws samples from a diffusion checkpoint written by the Trainer, rebuilding the model
    from the checkpoint (no training script needed). ``sample_shape`` (C, *spatial) defaults
    to the training data's; ``out``: also write a PNG grid there. Returns the samples
    (num_samples, C, *spatial) on the CPU."""
    state = load_checkpoint(path)
    sample_shape = sample_shape or (state.get("task_state") or {}).get("sample_shape")
    if sample_shape is None:
        raise ValueError(f"{_WHERE}: {path} does not record the sample shape (not a diffusion "
                         "checkpoint?); pass sample_shape=(C, *spatial)")
    diffusion = _diffusion(load_model(state, use_ema=use_ema, map_location=device))
    if labels is not None:
        labels = torch.as_tensor(labels, dtype=torch.long)
    samples = generate(diffusion, num_samples, sample_shape, sampler, steps, eta, labels,
                       guidance_scale, seed).cpu()
    if out is not None:
        save_sample_grid(samples, out, nrow=grid_columns(diffusion, num_samples),
                         value_range=value_range, projection=projection)
    return samples
