"""Two CPU processes under torchrun (DDP, gloo) match one process with the same global batch.

This file is also the worker script: ``torchrun ... test_training_ddp.py OUT BATCH``.
"""
import os
import shutil
import subprocess
import sys

import pytest
import torch
from torch import nn

from ndops.models.training import RegressionTask, Trainer, load_checkpoint

EPOCHS, TRAIN = 3, 32


def data():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(48, 1, 8, generator=g)
    return x, 0.5 * x.roll(1, -1)


def train(root, batch_size):
    """Deterministic model (no BatchNorm, no dropout): DDP's averaged gradient over two
    shards of B equals the gradient over one batch of 2B."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv1d(4, 1, 3, padding=1))
    x, y = data()
    trainer = Trainer(net, RegressionTask(), epochs=EPOCHS, batch_size=batch_size, lr=1e-2,
                      ema_decay=0.9, root=root, name="run", progress=False, plot=False)
    trainer.fit((x[:TRAIN], y[:TRAIN]), (x[TRAIN:], y[TRAIN:]))
    return trainer


@pytest.mark.slow
def test_torchrun_two_processes_match_one(tmp_path):
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun is not on PATH")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = ["torchrun", "--standalone", "--nproc-per-node", "2", __file__,
               str(tmp_path / "ddp"), "4"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(str(tmp_path / "single"), batch_size=8)
    finally:
        torch.set_num_threads(threads)

    state = load_checkpoint(tmp_path / "ddp" / "run" / "checkpoints" / "last.pt")
    assert state["world_size"] == 2 and len(state["ranks"]) == 2
    assert state["step"] == EPOCHS * TRAIN // 8
    for name, value in single.model.state_dict().items():
        torch.testing.assert_close(state["model"][name], value, rtol=1e-5, atol=1e-6)
    for name, value in single.ema.module.state_dict().items():
        torch.testing.assert_close(state["ema"]["module"][name], value, rtol=1e-5, atol=1e-6)
    for ddp_row, row in zip(state["history"], single.history):
        for key in ("train_loss", "val_loss", "val_psnr"):
            assert ddp_row[key] == pytest.approx(row[key], rel=1e-5), key
    # Every process kept the same EMA (each updates it from identical DDP weights).
    ema = [torch.load(tmp_path / "ddp" / f"ema_rank{r}.pt") for r in (0, 1)]
    for name in ema[0]:
        assert torch.equal(ema[0][name], ema[1][name]), name
    # Rank 0 alone wrote the logs: one line per epoch, no duplicates from rank 1.
    log = (tmp_path / "ddp" / "run" / "train.log").read_text()
    assert log.count(f"epoch {EPOCHS}/{EPOCHS}") == 1
    assert "2 process(es)" in log


if __name__ == "__main__":
    trainer = train(sys.argv[1], int(sys.argv[2]))
    torch.save(trainer.ema.module.state_dict(),
               os.path.join(sys.argv[1], f"ema_rank{trainer.distributed.rank}.pt"))
