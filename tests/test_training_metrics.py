"""Metric values on hand-checked cases, exact accumulation, and PNG sample grids at any N."""
import math
import struct
import zlib

import pytest
import torch

from ndops.models.training import (MetricTotals, accuracy, denoiser_arguments,
                                   denoising_psnr, dice, fit_denoiser, iou, psnr,
                                   save_sample_grid)
from ndops.models.training.images import grid_image
from ndops.models.unet import ResidualDenoiser, UNet


def test_accuracy_classification_and_dense():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    assert accuracy(logits, torch.tensor([0, 1, 1])) == (2, 3)
    dense = torch.zeros(1, 3, 2, 2)
    dense[0, 2] = 1.0                                   # predicts class 2 everywhere
    correct, count = accuracy(dense, torch.tensor([[[2, 2], [0, 1]]]))
    assert (float(correct), count) == (2.0, 4)
    binary = torch.tensor([[0.5], [-0.5]])              # K == 1: logit > 0
    assert float(accuracy(binary, torch.tensor([1, 1]))[0]) == 1.0


def _logits(labels, num_classes):
    return torch.nn.functional.one_hot(labels, num_classes).movedim(-1, 1).float()


def test_dice_and_iou_by_hand():
    target = torch.tensor([[[1, 1, 0, 0]]])             # (B=1, 1, 4): 2-D labels
    pred = torch.tensor([[[1, 0, 0, 2]]])
    logits = _logits(pred, 3)
    # class 1: |P|=1, |T|=2, |P&T|=1 -> Dice 2/3, IoU 1/2; class 2: |P|=1, |T|=0 -> 0, 0.
    total, count = dice(logits, target)
    assert count == 1 and float(total) == pytest.approx((2 / 3 + 0) / 2)
    total, _ = iou(logits, target)
    assert float(total) == pytest.approx((1 / 2 + 0) / 2)
    # With background: class 0 has |P|=2, |T|=2, |P&T|=1 -> Dice 1/2.
    total, _ = dice(logits, target, include_background=True)
    assert float(total) == pytest.approx((1 / 2 + 2 / 3 + 0) / 3)
    # A sample with only background in both prediction and target has no foreground score.
    assert dice(_logits(torch.zeros(1, 1, 4, dtype=torch.long), 3),
                torch.zeros(1, 1, 4, dtype=torch.long)) == (0, 0)


def test_binary_dice_with_one_logit_channel():
    logits = torch.tensor([[[[1.0, -1.0, 1.0]]]])        # (B, 1, 1, 3)
    target = torch.tensor([[[[1, 1, 0]]]])
    total, count = dice(logits, target)                 # |P|=2, |T|=2, |P&T|=1
    assert count == 1 and float(total) == pytest.approx(0.5)


def test_psnr_by_hand():
    target = torch.zeros(2, 1, 4)
    prediction = torch.full((2, 1, 4), 0.1)
    total, count = psnr(prediction, target, data_range=1.0)
    assert count == 2 and float(total) / 2 == pytest.approx(20.0)
    assert float(psnr(target, target)[0]) / 2 == pytest.approx(100.0)   # capped, not inf


def test_denoising_psnr_of_noisy_input_and_denoised_output():
    clean = torch.zeros(2, 1, 4)
    noisy = torch.full((2, 1, 4), 0.1)                  # MSE 0.01 -> 20 dB
    before, after = denoising_psnr(lambda x: x / 10, noisy, clean)    # MSE 1e-4 -> 40 dB
    assert before == pytest.approx(20.0) and after == pytest.approx(40.0)
    before, after = denoising_psnr(torch.zeros_like, noisy, clean, data_range=2.0)
    assert before == pytest.approx(20.0 + 20 * math.log10(2)) and after == pytest.approx(100.0)


def test_totals_are_exact_over_uneven_batches():
    totals = MetricTotals()
    totals.add({"accuracy": (torch.tensor(3.0), 4)})
    totals.add({"accuracy": (1, 1)})
    assert totals.reduce() == {"accuracy": 0.8}          # 4 of 5, not mean(0.75, 1.0)
    restored = MetricTotals(totals.state())
    assert restored.reduce() == {"accuracy": 0.8}
    assert math.isnan(MetricTotals({"x": (0.0, 0.0)}).reduce()["x"])


def _png_size(path):
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, color = struct.unpack(">IIBB", data[16:26])
    idat = data[data.index(b"IDAT") + 4:data.index(b"IEND") - 8]
    channels = 3 if color == 2 else 1
    assert len(zlib.decompress(idat)) == height * (1 + width * channels)
    return height, width, channels


@pytest.mark.parametrize("shape, expected", [
    ((4, 1, 20), (2 * 50 + 2, 2 * 22 + 2, 1)),           # 1-D curves, 48 px high
    ((3, 3, 5, 6), (2 * 7 + 2, 2 * 8 + 2, 3)),           # RGB images
    ((4, 2, 5, 6), (2 * 7 + 2, 2 * 14 + 2, 1)),          # 2 channels side by side
    ((2, 1, 5, 6, 3), (1 * 7 + 2, 2 * 8 + 2, 1)),        # 3-D: middle slice
    ((2, 1, 5, 6, 3, 4), (1 * 7 + 2, 2 * 8 + 2, 1)),     # 4-D
])
def test_sample_grids_at_any_n(tmp_path, shape, expected):
    path = save_sample_grid(torch.rand(shape) * 2 - 1, tmp_path / "grid.png")
    assert _png_size(path) == expected


def test_grid_projections():
    volume = torch.full((1, 1, 2, 2, 5), -1.0)
    volume[..., 0] = 1.0                                 # bright only in the first z slice
    assert grid_image(volume, padding=0, projection="slice").max() == 0
    assert grid_image(volume, padding=0, projection="max").min() == 255
    with pytest.raises(ValueError, match="projection"):
        grid_image(volume, projection="sum")


def test_residual_denoiser_starts_as_identity_and_fit_denoiser_scores_it(tmp_path):
    """ResidualDenoiser zero-initializes the UNet's head (the identity at first); fit_denoiser
    trains, reloads the best EMA and returns the held-out PSNR before and after."""
    torch.manual_seed(0)
    model = ResidualDenoiser(UNet(2, 1, 1, channels=(4, 8)))
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(model(x), x)
    clean = torch.rand(12, 1, 8, 8)
    noisy = clean + 0.1 * torch.randn_like(clean)
    data = {"train": torch.utils.data.TensorDataset(noisy[:8], clean[:8]),
            "val": (noisy[8:10], clean[8:10]), "test": (noisy[10:], clean[10:])}
    trainer, before, after = fit_denoiser(model, data, epochs=1, batch_size=4, name="tiny",
                                          root=str(tmp_path))
    assert trainer.run_dir.startswith(str(tmp_path)) and before > 0 and after > 0
    args = denoiser_arguments("demo", epochs=3, noise=0.2, argv=["--seed", "5"])
    assert (args.epochs, args.noise, args.seed, args.root) == (3, 0.2, 5, "runs")
