"""2-D class-conditioned diffusion on scikit-learn's 8x8 digits (1797 real images, offline).

A time- and class-conditioned ``ndops.models.unet.UNet`` is trained as the denoiser of a
``GaussianDiffusion`` (cosine schedule, 200 steps, v-prediction, 10 % label dropout for
classifier-free guidance) with ``ndops.models.training.Trainer`` and ``DiffusionTask``, which
writes a DDIM sample grid (one digit class per column) after every ``--sample-every`` epochs.
At the end, samples are drawn from the best checkpoint (EMA weights) with DDIM and DDPM, and
a support-vector classifier trained on the real training digits (about 99 % accurate on real
test digits) says how often a generated sample shows the digit it was asked for.

    python examples/digits_diffusion.py                 # grids in runs/digits-diffusion*/samples
    ndops-train sample --checkpoint runs/digits-diffusion/checkpoints/best.pt --steps 50
"""
import argparse
import os

import torch

from ndops.models.diffusion import GaussianDiffusion
from ndops.models.training import DiffusionTask, Trainer, sample_from_checkpoint
from ndops.models.unet import UNet


def load_data(seed=0, test_fraction=0.2):
    """{"train", "val"}: tuples (images (n, 1, 8, 8) in [-1, 1], labels (n,))."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    train, val = train_test_split(torch.arange(len(labels)).numpy(), test_size=test_fraction,
                                  random_state=seed, stratify=labels.numpy())
    return {"train": (images[train], labels[train]), "val": (images[val], labels[val])}


def build():
    denoiser = UNet(2, 1, 1, channels=(32, 64, 64), time_conditioning=True, num_classes=10,
                    norm="group", act="silu", attention_levels=(None, None, "self"))
    return GaussianDiffusion(denoiser, timesteps=200, schedule="cosine", prediction="v",
                             cond_drop_prob=0.1, null_label=-1)


def digit_accuracy(samples, labels, data):
    """Fraction of samples an SVC trained on the real training digits labels as requested,
    and the SVC's accuracy on the real validation digits (for reference)."""
    from sklearn.svm import SVC

    def features(images):                       # back to sklearn's 0..16 pixel scale
        return ((images.clamp(-1, 1) + 1) * 8).flatten(1).numpy()
    svc = SVC(gamma=0.001).fit(features(data["train"][0]), data["train"][1].numpy())
    real = (svc.predict(features(data["val"][0])) == data["val"][1].numpy()).mean()
    generated = (svc.predict(features(samples)) == labels.numpy()).mean()
    return float(generated), float(real)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--sample-every", type=int, default=10)
    parser.add_argument("--root", default="runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = load_data(args.seed)
    torch.manual_seed(args.seed)
    diffusion = build()
    optimizer = torch.optim.AdamW(diffusion.parameters(), lr=2e-3)
    trainer = Trainer(diffusion, DiffusionTask(sample_every=args.sample_every, num_samples=40,
                                               sampler="ddim", steps=50),
                      optimizer, epochs=args.epochs, batch_size=64, ema_decay=0.995,
                      grad_clip=1.0, seed=args.seed, root=args.root, name="digits-diffusion")
    trainer.fit(data["train"], data["val"])
    best = os.path.join(trainer.checkpoint_dir, "best.pt")
    labels = torch.arange(200) % 10
    for sampler, steps, scale in (("ddim", 50, 1.0), ("ddim", 50, 3.0), ("ddpm", 200, 1.0)):
        out = os.path.join(trainer.run_dir, "samples", f"final_{sampler}{steps}_cfg{scale}.png")
        samples = sample_from_checkpoint(best, 200, sampler, steps, labels=labels,
                                         guidance_scale=scale, seed=1, out=out)
        generated, real = digit_accuracy(samples, labels, data)
        print(f"{sampler} {steps} steps, guidance {scale}: {100 * generated:.1f} % of 200 "
              f"samples classified as the requested digit (SVC on real validation digits: "
              f"{100 * real:.1f} %); grid {out}")


if __name__ == "__main__":
    main()
