"""Training and scoring a denoiser on held-out data, and the command line of the denoising
examples (examples/ecg1d_denoise.py, fmri4d_denoise.py)."""
import argparse

import torch

from .checkpoint import load_checkpoint
from .metrics import denoising_psnr
from .tasks import RegressionTask
from .trainer import Trainer


def fit_denoiser(model, data, *, epochs, batch_size, name, seed=0, root="runs", lr=3e-3,
                 ema_decay=0.99):
    """Train ``model`` on ``data["train"]`` (MSE, PSNR on ``data["val"]``; AdamW at ``lr`` with
    a cosine schedule, an EMA of the weights), reload the best checkpoint's EMA and return
    ``(trainer, noisy_db, denoised_db)``: :func:`denoising_psnr` of ``data["test"]`` (a pair
    ``(noisy, clean)``), data in [0, 1]."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    trainer = Trainer(model, RegressionTask(data_range=1.0), optimizer, scheduler,
                      epochs=epochs, batch_size=batch_size, ema_decay=ema_decay, seed=seed,
                      root=root, name=name)
    trainer.fit(data["train"], data["val"])
    trainer.ema.load_state_dict(load_checkpoint(f"{trainer.checkpoint_dir}/best.pt")["ema"])
    before, after = denoising_psnr(trainer.predict, *data["test"])
    return trainer, before, after


def denoiser_arguments(description, *, epochs, noise, argv=None):
    """The command line of a denoising example: ``--epochs``, ``--noise`` (the Gaussian noise's
    sigma, data in [0, 1]), ``--root`` (run folders) and ``--seed``, with these defaults."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--noise", type=float, default=noise)
    parser.add_argument("--root", default="runs")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)
