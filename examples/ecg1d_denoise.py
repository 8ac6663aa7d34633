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

import numpy as np
import torch
from torch.utils.data import Dataset

from ndops.models.training import denoiser_arguments, fit_denoiser
from ndops.models.unet import ResidualDenoiser, UNet

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


def build():
    return ResidualDenoiser(UNet(1, 1, 1, channels=(16, 32, 64), kernel_size=5, norm="group",
                                 act="silu"))


def main(argv=None):
    args = denoiser_arguments(__doc__.split("\n")[0], epochs=30, noise=0.1, argv=argv)
    data = load_data(args.noise, args.seed)
    torch.manual_seed(args.seed)
    model = build()
    trainer, before, after = fit_denoiser(model, data, epochs=args.epochs, batch_size=32,
                                          name="ecg1d-denoise", seed=args.seed, root=args.root)
    print(f"held-out ECG samples {TEST_START}-1023 (16 noise draws, sigma {args.noise}): "
          f"PSNR noisy {before:.2f} dB -> denoised {after:.2f} dB (gain "
          f"{after - before:+.2f} dB); run folder {trainer.run_dir}")
    return before, after


if __name__ == "__main__":
    main()
