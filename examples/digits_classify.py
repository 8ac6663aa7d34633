"""2-D classification of scikit-learn's 8x8 handwritten digits (1797 real images, offline).

Trains two ndops classifiers with ``ndops.models.training.Trainer`` and reports test accuracy:

- ``resnet``: ``ndops.models.resnet.ResNet`` (basic blocks, layers (2, 2), widths (32, 64),
  the "small" stem for tiny inputs);
- ``unet``: a UNet-backbone classifier: ``ndops.models.unet.UNet`` maps the image to 32
  feature channels per pixel, global average pooling and a linear layer give the logits.

Split (stratified, seeded): 70 % train, 10 % validation (best checkpoint), 20 % test.

    python examples/digits_classify.py                 # both models
    python examples/digits_classify.py --model unet --epochs 10
"""
import argparse

import torch
from torch import nn

from ndops.models.resnet import ResNet
from ndops.models.training import ClassificationTask, Trainer, load_checkpoint
from ndops.models.unet import UNet


def load_data(seed=0, val_fraction=0.1, test_fraction=0.2):
    """{"train", "val", "test"}: tuples (images (n, 1, 8, 8) in [-1, 1], labels (n,))."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    index = torch.arange(len(labels)).numpy()
    rest, test = train_test_split(index, test_size=test_fraction, random_state=seed,
                                  stratify=labels.numpy())
    train, val = train_test_split(rest, test_size=val_fraction / (1 - test_fraction),
                                  random_state=seed, stratify=labels.numpy()[rest])
    return {name: (images[idx], labels[idx]) for name, idx in
            (("train", train), ("val", val), ("test", test))}


class UNetClassifier(nn.Module):
    """A UNet as a classification backbone: per-pixel features -> global average pool ->
    linear logits. Works at any N (``spatial_dims``)."""

    def __init__(self, spatial_dims=2, in_channels=1, num_classes=10, features=32,
                 channels=(16, 32, 64)):
        super().__init__()
        self.in_channels = in_channels
        self.backbone = UNet(spatial_dims, in_channels, features, channels=channels)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(features, num_classes))

    def forward(self, x):
        features = self.backbone(x)
        return self.head(features.flatten(2).mean(2))


def build(kind):
    if kind == "resnet":
        return ResNet(2, 1, 10, preset=None, layers=(2, 2), block="basic", widths=(32, 64),
                      stem="small")
    return UNetClassifier()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("resnet", "unet", "both"), default="both")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--root", default="runs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = load_data(args.seed)
    results = {}
    for kind in (("resnet", "unet") if args.model == "both" else (args.model,)):
        torch.manual_seed(args.seed)
        model = build(kind)
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs)
        trainer = Trainer(model, ClassificationTask(label_smoothing=0.05), optimizer, scheduler,
                          epochs=args.epochs, batch_size=64, ema_decay=0.99, seed=args.seed,
                          root=args.root, name=f"digits-{kind}")
        trainer.fit(data["train"], data["val"])
        # Test with the best checkpoint's EMA weights.
        best = load_checkpoint(f"{trainer.checkpoint_dir}/best.pt")
        trainer.ema.load_state_dict(best["ema"])
        results[kind] = trainer.evaluate(data["test"])
        print(f"{kind}: test accuracy {100 * results[kind]['accuracy']:.2f} % "
              f"({len(data['test'][1])} images), best epoch {best['best']['epoch']}, "
              f"run folder {trainer.run_dir}")
    return results


if __name__ == "__main__":
    main()
