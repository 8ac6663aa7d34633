"""Trainer: learning, checkpoints, exact resume, atomic saves, EMA, AMP and clear errors."""
import os

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from ndops.models.training import (ClassificationTask, RegressionTask, SegmentationTask, Trainer,
                                   TrainerConfig, load_checkpoint)
from ndops.models.training import checkpoint as ckpt

QUIET = dict(progress=False, plot=False)
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models


def regression_data(count=40, length=8, seed=3):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(count, 1, length, generator=g)
    return x, 0.5 * x.roll(1, -1)


def conv_net(in_channels=1, out_channels=1):
    net = nn.Sequential(nn.Conv1d(in_channels, 4, 3, padding=1), nn.Tanh(),
                        nn.Conv1d(4, out_channels, 3, padding=1))
    net.in_channels = in_channels
    return net


class NoisyCopies(Dataset):
    """Each access adds fresh noise from the global RNG (exercises RNG checkpointing)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] + 0.1 * torch.randn_like(self.x[i]), self.y[i]


def classifier():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(),
                        nn.Linear(24, 2))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    return net, optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 2, 0.5)


def classification_data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(40, 2, 6, generator=g)
    y = (x.mean((1, 2)) > 0).long()
    return NoisyCopies(x[:32], y[:32]), (x[32:], y[32:])


def files_state(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in os.listdir(folder)}


def test_loss_decreases_and_checkpoints(tmp_path):
    x, y = regression_data()
    trainer = Trainer(conv_net(), RegressionTask(), epochs=4, batch_size=8, lr=0.02,
                      root=str(tmp_path), name="fit", progress=True)
    history = trainer.fit((x[:32], y[:32]), (x[32:], y[32:]))
    losses = [row["train_loss"] for row in history]
    assert losses[-1] < 0.7 * losses[0]
    assert history[-1]["val_psnr"] > history[0]["val_psnr"]
    run = tmp_path / "fit"
    assert sorted(os.listdir(run / "checkpoints")) == ["best.pt", "last.pt"]
    for name in ("config.json", "metrics.csv", "metrics.json", "train.log", "loss.png"):
        assert (run / name).is_file(), name
    assert len((run / "metrics.csv").read_text().splitlines()) == 1 + 4
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    best_epoch = max(history, key=lambda row: row["val_psnr"])["epoch"]
    assert best["epoch"] == best_epoch == trainer.best["epoch"]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["epoch"] == 4


def test_resume_mid_epoch_matches_uninterrupted_run(tmp_path):
    settings = dict(epochs=3, batch_size=8, root=str(tmp_path), ema_decay=0.9, grad_clip=1.0,
                    scheduler_interval="step", save_every_steps=2, **QUIET)
    train, val = classification_data()
    net, optimizer, scheduler = classifier()
    full = Trainer(net, ClassificationTask(), optimizer, scheduler, name="full", **settings)
    full.fit(train, val)

    class Crash:
        def on_step_end(self, trainer):
            if trainer.step == 7:       # mid epoch 2; the last checkpoint is at step 6
                raise KeyboardInterrupt

    net2, optimizer2, scheduler2 = classifier()
    with pytest.raises(KeyboardInterrupt):
        Trainer(net2, ClassificationTask(), optimizer2, scheduler2, name="cut",
                callbacks=[Crash()], **settings).fit(train, val)
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")
    assert (state["epoch"], state["step_in_epoch"]) == (1, 2)

    net3, optimizer3, scheduler3 = classifier()
    resumed = Trainer(net3, ClassificationTask(), optimizer3, scheduler3, name="cut", **settings)
    resumed.fit(train, val, resume=tmp_path / "cut" / "checkpoints" / "last.pt")
    assert resumed.run_dir == str(tmp_path / "cut")
    for (name, a), b in zip(net.state_dict().items(), net3.state_dict().values()):
        assert torch.equal(a, b), name
    ema_states = full.ema.module.state_dict(), resumed.ema.module.state_dict()
    for a, b in zip(*(state.values() for state in ema_states)):
        assert torch.equal(a, b)
    drop_time = [{k: v for k, v in row.items() if k != "seconds"} for row in full.history]
    assert drop_time == [{k: v for k, v in row.items() if k != "seconds"}
                         for row in resumed.history]
    assert "resumed from" in (tmp_path / "cut" / "train.log").read_text()


def test_failed_save_leaves_previous_checkpoint_and_no_partial_file(tmp_path, monkeypatch):
    x, y = regression_data()
    trainer = Trainer(conv_net(), RegressionTask(), epochs=1, batch_size=8, root=str(tmp_path),
                      **QUIET)
    trainer.fit((x, y))
    folder = trainer.checkpoint_dir
    before = files_state(folder)

    def failing_save(obj, f):
        f.write(b"half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space"):
        trainer.save_checkpoint(best=True)
    assert files_state(folder) == before          # same names (no temp file), same bytes


def test_ema_differs_from_weights_and_is_used_for_evaluation(tmp_path):
    x, y = regression_data()
    trainer = Trainer(conv_net(), RegressionTask(), epochs=2, batch_size=8, lr=0.02,
                      ema_decay=0.9, root=str(tmp_path), **QUIET)
    trainer.fit((x[:32], y[:32]))
    raw, ema = trainer.model, trainer.ema.module
    assert any(not torch.equal(a, b) for a, b in zip(raw.parameters(), ema.parameters()))
    val = (x[32:], y[32:])
    with torch.no_grad():
        expected = nn.functional.mse_loss(ema(x[32:]), y[32:]).item()
        raw_loss = nn.functional.mse_loss(raw(x[32:]), y[32:]).item()
    assert trainer.evaluate(val)["loss"] == pytest.approx(expected, rel=1e-6)
    assert trainer.evaluate(val, use_ema=False)["loss"] == pytest.approx(raw_loss, rel=1e-6)
    assert raw_loss != pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(trainer.predict(x[32:]), ema(x[32:]).detach())


def test_run_folders_are_never_reused(tmp_path):
    x, y = regression_data(count=16)
    first = Trainer(conv_net(), RegressionTask(), epochs=1, batch_size=8, root=str(tmp_path),
                    name="exp", **QUIET)
    first.fit((x, y))
    before = files_state(os.path.join(first.run_dir, "checkpoints"))
    second = Trainer(conv_net(), RegressionTask(), epochs=1, batch_size=8, root=str(tmp_path),
                     name="exp", **QUIET)
    second.fit((x, y))
    assert (os.path.basename(first.run_dir), os.path.basename(second.run_dir)) == ("exp",
                                                                                   "exp-2")
    assert files_state(os.path.join(first.run_dir, "checkpoints")) == before


def test_plain_progress_lines_without_tqdm(tmp_path, monkeypatch, capsys):
    import sys
    monkeypatch.setitem(sys.modules, "tqdm", None)     # import tqdm -> ImportError
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    x, y = regression_data(count=32)
    Trainer(conv_net(), RegressionTask(), epochs=1, batch_size=8, log_every_steps=2,
            root=str(tmp_path), plot=False).fit((x, y))
    out = capsys.readouterr().out
    assert "epoch 1/1 2/4 loss" in out and "epoch 1/1 4/4 loss" in out


def test_bf16_autocast_and_segmentation_on_cpu(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 1, 6, 6, generator=g)
    labels = (x[:, 0] > 0.3).long() + (x[:, 0] > 1.0).long()
    net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 3, 1))
    trainer = Trainer(net, SegmentationTask(), epochs=2, batch_size=8, lr=0.05, amp="bf16",
                      root=str(tmp_path), **QUIET)
    history = trainer.fit((x, labels), (x, labels))
    assert {"val_dice", "val_iou", "val_accuracy"} <= set(history[-1])
    assert 0 <= history[-1]["val_dice"] <= 1 and history[-1]["train_loss"] < history[0][
        "train_loss"]


# ----- bad input: clear errors, earlier checkpoints untouched -----
def test_missing_or_empty_data(tmp_path):
    trainer = Trainer(conv_net(), RegressionTask(), root=str(tmp_path), **QUIET)
    with pytest.raises(ValueError, match="train data is missing"):
        trainer.fit(None)
    with pytest.raises(ValueError, match="train data is empty"):
        trainer.fit((torch.zeros(0, 1, 8), torch.zeros(0, 1, 8)))
    with pytest.raises(ValueError, match="share their first"):
        trainer.fit((torch.zeros(4, 1, 8), torch.zeros(3, 1, 8)))
    assert not os.listdir(tmp_path)               # nothing was created


@pytest.mark.parametrize("model, message", [
    (conv_net(in_channels=2), "3 channels .* in_channels=2"),
    (nn.Sequential(nn.Conv1d(2, 1, 3, padding=1)), "model fails on a batch"),
])
def test_wrong_channel_count(tmp_path, model, message):
    x = torch.randn(8, 3, 8)
    trainer = Trainer(model, RegressionTask(), root=str(tmp_path), **QUIET)
    with pytest.raises(ValueError, match=message):
        trainer.fit((x, x[:, :1]))
    assert not os.listdir(tmp_path)


def test_targets_that_cannot_be_right(tmp_path):
    x, y = regression_data(count=8)
    with pytest.raises(ValueError, match="output's shape"):
        Trainer(conv_net(), RegressionTask(), root=str(tmp_path), **QUIET).fit((x, y[:, 0]))
    net = nn.Sequential(nn.Flatten(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        Trainer(net, ClassificationTask(), root=str(tmp_path), **QUIET).fit(
            (x, torch.tensor([0, 1, 2, 3, 0, 1, 2, 0])))


def test_bad_settings():
    with pytest.raises(ValueError, match="unknown setting.*'epoch'"):
        TrainerConfig.build(epoch=3)
    with pytest.raises(ValueError, match="amp='fp16' needs a CUDA"):
        Trainer(conv_net(), RegressionTask(), amp="fp16", device="cpu")
    with pytest.raises(ValueError, match="ema_decay"):
        TrainerConfig(ema_decay=1.5)
    with pytest.raises(ValueError, match="monitor='val_dice' is not a metric"):
        Trainer(conv_net(), RegressionTask(), monitor="val_dice", **QUIET).fit(
            regression_data(count=8))


def test_bad_checkpoints_raise_and_leave_files_untouched(tmp_path):
    x, y = regression_data(count=16)
    trainer = Trainer(conv_net(), RegressionTask(), epochs=1, batch_size=8, root=str(tmp_path),
                      name="run", **QUIET)
    trainer.fit((x, y))
    folder = trainer.checkpoint_dir
    before = files_state(folder)
    last = os.path.join(folder, "last.pt")

    broken = tmp_path / "broken.pt"
    broken.write_bytes(before["last.pt"][: len(before["last.pt"]) // 2])
    not_ours = tmp_path / "weights.pt"
    torch.save(conv_net().state_dict(), not_ours)
    cases = [(broken, RuntimeError, "cannot read checkpoint .* truncated"),
             (not_ours, ValueError, "not a checkpoint written by"),
             (tmp_path / "nothing.pt", FileNotFoundError, "does not exist")]
    for path, error, message in cases:
        with pytest.raises(error, match=message):
            Trainer(conv_net(), RegressionTask(), epochs=2, root=str(tmp_path),
                    **QUIET).fit((x, y), resume=path)
    # A valid checkpoint resumed with a different model or with wrong data.
    with pytest.raises(ValueError, match="cannot load the checkpoint's model weights"):
        Trainer(conv_net(out_channels=2), RegressionTask(), epochs=2, root=str(tmp_path),
                **QUIET).fit((x, torch.cat([y, y], 1)), resume=last)
    with pytest.raises(ValueError, match="in_channels=1"):
        Trainer(conv_net(), RegressionTask(), epochs=2, root=str(tmp_path), **QUIET).fit(
            (torch.randn(16, 3, 8), y), resume=last)
    assert files_state(folder) == before
    assert sorted(os.listdir(tmp_path)) == ["broken.pt", "run", "weights.pt"]


def test_rng_state_round_trip():
    state = ckpt.capture_rng_state()
    first = (torch.rand(3), torch.randn(2))
    ckpt.restore_rng_state(state)
    torch.testing.assert_close((torch.rand(3), torch.randn(2)), first)
