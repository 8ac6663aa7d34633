"""1-D denoising of a real ECG with a 1-D UNet.

Data: PyWavelets' bundled ``pywt.data.ecg()`` (1024 samples of a real electrocardiogram at
360 Hz, installed with PyWavelets; no download), scaled to [0, 1] by its min and max.
Gaussian noise (sigma ``--noise``, default 0.1 of the range) is added and a residual
``ndops.models.unet.UNet`` (N = 1) learns to remove it (``RegressionTask``: MSE, PSNR).

Split by time, three disjoint segments: samples 0-639 train (random 128-sample windows, a
fresh noise draw each time, 512 windows per epoch); 640-767 validation (8 fixed noisy copies;
picks the best checkpoint); 768-1023 test (256 samples, about two heartbeats, 16 fixed noise
realizations; the reported PSNR of the noisy input and of the denoised output against the
clean ECG).

    python examples/ecg1d_denoise.py [--epochs 30] [--noise 0.1]
"""
import argparse

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ndops.models.training import RegressionTask, Trainer, denoising_psnr, load_checkpoint
from ndops.models.unet import UNet

VAL_START, TEST_START, WINDOW = 640, 768, 128


def load_ecg():
    """The ECG as a (1024,) float32 tensor scaled to [0, 1]."""
    import pywt
    ecg = pywt.data.ecg().astype(np.float32)
    return torch.from_numpy((ecg - ecg.min()) / (ecg.max() - ecg.min()))


class RandomNoisyWindows(Dataset):
    """``length`` random windows of ``signal`` with fresh Gaussian noise per access."""

    def __init__(self, signal, length, noise):
        self.signal, self.length, self.noise = signal, length, noise

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        start = int(torch.randint(0, len(self.signal) - WINDOW + 1, ()))
        clean = self.signal[start:start + WINDOW][None]
        return clean + self.noise * torch.randn_like(clean), clean


def fixed_noisy(segment, copies, noise, seed):
    clean = segment[None, None].repeat(copies, 1, 1)
    generator = torch.Generator().manual_seed(seed)
    return clean + noise * torch.randn(clean.shape, generator=generator), clean


def load_data(noise=0.1, seed=0, windows_per_epoch=512):
    """{"train": random windows of samples 0-639, "val": 8 noisy copies of samples 640-767,
    "test": 16 noisy copies of samples 768-1023}."""
    ecg = load_ecg()
    return {"train": RandomNoisyWindows(ecg[:VAL_START], windows_per_epoch, noise),
            "val": fixed_noisy(ecg[VAL_START:TEST_START], 8, noise, seed + 2),
            "test": fixed_noisy(ecg[TEST_START:], 16, noise, seed + 3)}


class ResidualDenoiser(nn.Module):
    """``x + unet(x)``, the UNet's output conv zero-initialized (training starts from the
    identity)."""

    def __init__(self, unet):
        super().__init__()
        self.unet, self.in_channels = unet, unet.in_channels
        nn.init.zeros_(unet.head.weight)
        nn.init.zeros_(unet.head.bias)

    def forward(self, x):
        return x + self.unet(x)


def build():
    return ResidualDenoiser(UNet(1, 1, 1, channels=(16, 32, 64), kernel_size=5, norm="group",
                                 act="silu"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--root", default="runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = load_data(args.noise, args.seed)
    torch.manual_seed(args.seed)
    model = build()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs)
    trainer = Trainer(model, RegressionTask(data_range=1.0), optimizer, scheduler,
                      epochs=args.epochs, batch_size=32, ema_decay=0.99, seed=args.seed,
                      root=args.root, name="ecg1d-denoise")
    trainer.fit(data["train"], data["val"])
    trainer.ema.load_state_dict(load_checkpoint(f"{trainer.checkpoint_dir}/best.pt")["ema"])
    before, after = denoising_psnr(trainer.predict, *data["test"])
    print(f"held-out ECG samples {TEST_START}-1023 (16 noise draws, sigma {args.noise}): "
          f"PSNR noisy {before:.2f} dB -> denoised {after:.2f} dB (gain "
          f"{after - before:+.2f} dB); run folder {trainer.run_dir}")
    return before, after


if __name__ == "__main__":
    main()
