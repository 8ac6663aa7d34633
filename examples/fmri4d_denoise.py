"""4-D denoising of a real fMRI scan: x, y, z and time treated as 4 spatial dims.

Data: nibabel's bundled ``nibabel/tests/data/functional.nii`` (17 x 21 x 3 voxels x 20 time
points, installed with nibabel; no download), scaled to [0, 1] by its maximum. Gaussian noise
(sigma ``--noise``, default 0.05 of the range) is added and a 4-D ``ndops.models.unet.UNet``
(every conv an ndops N-d conv), as a residual denoiser ``x + unet(x)``, learns to remove it
(``RegressionTask``: MSE loss, PSNR).

Train / held-out split of the single scan, by time: time points 0-13 are the training block,
14-19 (6 time points, never seen in training) are held out.
- training samples: random 4-D crops (12 x 12 x 3 x 6) of the training block, each with a
  fresh noise draw (a new noise realization every time, 256 crops per epoch);
- validation: 8 fixed crops of the training block's last 6 time points (best checkpoint);
- held-out test: the whole 17 x 21 x 3 x 6 held-out block with 8 fixed noise realizations;
  reported as the PSNR of the noisy input and of the denoised output against the clean scan.

    python examples/fmri4d_denoise.py [--epochs 15] [--noise 0.05]
"""
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from ndops.models.training import denoiser_arguments, fit_denoiser
from ndops.models.unet import ResidualDenoiser, UNet

TRAIN_TIMES, CROP = 14, (12, 12, 3, 6)


def load_scan():
    """The fMRI scan as a (17, 21, 3, 20) float32 tensor scaled to [0, 1]."""
    import nibabel
    path = os.path.join(os.path.dirname(nibabel.__file__), "tests", "data", "functional.nii")
    scan = np.asarray(nibabel.load(path).dataobj, dtype=np.float32)
    return torch.from_numpy(scan / scan.max())


class RandomNoisyCrops(Dataset):
    """``length`` random crops of ``volume`` (x, y, z, t) with fresh Gaussian noise each access
    (drawn from the global RNG, which the Trainer seeds and checkpoints)."""

    def __init__(self, volume, length, noise):
        self.volume, self.length, self.noise = volume, length, noise

    def __len__(self):
        return self.length

    def __getitem__(self, index):
        starts = [int(torch.randint(0, size - crop + 1, ())) for size, crop in
                  zip(self.volume.shape, CROP)]
        clean = self.volume[tuple(slice(s, s + c) for s, c in zip(starts, CROP))][None]
        return clean + self.noise * torch.randn_like(clean), clean


def fixed_noisy(clean_volumes, noise, seed):
    """(noisy, clean) with one fixed noise realization per volume (reproducible)."""
    clean = torch.stack(clean_volumes)[:, None]
    generator = torch.Generator().manual_seed(seed)
    return clean + noise * torch.randn(clean.shape, generator=generator), clean


def load_data(noise=0.05, seed=0, crops_per_epoch=256):
    """{"train": random crops dataset, "val": 8 fixed crops, "test": 8 noisy copies of the
    held-out time block}."""
    scan = load_scan()
    train_block, held_out = scan[..., :TRAIN_TIMES], scan[..., TRAIN_TIMES:]
    generator = torch.Generator().manual_seed(seed + 1)
    val_crops = []
    for _ in range(8):
        x, y = (int(torch.randint(0, s - c + 1, (), generator=generator))
                for s, c in zip(scan.shape[:2], CROP[:2]))
        val_crops.append(train_block[x:x + CROP[0], y:y + CROP[1], :, -CROP[3]:])
    return {"train": RandomNoisyCrops(train_block, crops_per_epoch, noise),
            "val": fixed_noisy(val_crops, noise, seed + 2),
            "test": fixed_noisy([held_out] * 8, noise, seed + 3)}


def build():
    # z has only 3 voxels: downsample x, y and t by 2, keep z.
    return ResidualDenoiser(UNet(4, 1, 1, channels=(8, 16), strides=((2, 2, 1, 2),),
                                 norm="group", act="silu"))


def main(argv=None):
    args = denoiser_arguments(__doc__.split("\n")[0], epochs=15, noise=0.05, argv=argv)
    data = load_data(args.noise, args.seed)
    torch.manual_seed(args.seed)
    model = build()
    trainer, before, after = fit_denoiser(model, data, epochs=args.epochs, batch_size=8,
                                          name="fmri4d-denoise", seed=args.seed, root=args.root)
    print(f"held-out time points {TRAIN_TIMES}-19 (17x21x3x6, 8 noise draws, sigma "
          f"{args.noise}): PSNR noisy {before:.2f} dB -> denoised {after:.2f} dB "
          f"(gain {after - before:+.2f} dB); run folder {trainer.run_dir}")
    return before, after


if __name__ == "__main__":
    main()
