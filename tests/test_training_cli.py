"""``ndops-train`` (train / evaluate / sample from JSON or YAML configs), diffusion training with
per-epoch sample grids, and the configs shipped in examples/configs."""
import json
import os

import numpy as np
import pytest
import torch

from ndops.models.training import builders, cli
from ndops.models.training.data import first_batch, as_dataset

EXAMPLE_CONFIGS = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "configs")
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models


def classification_config(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 1, 8, 8)).astype("float32")
    np.savez(tmp_path / "digits.npz", x=x, y=(x.mean((1, 2, 3)) > 0).astype("int64"))
    config = {
        "data": {"npz": "digits.npz", "inputs": "x", "targets": "y", "val_fraction": 0.25,
                 "test_fraction": 0.25},
        "model": {"class": "ResNet", "args": {
            "spatial_dims": 2, "in_channels": 1, "num_classes": 2, "preset": None,
            "layers": [1], "block": "basic", "widths": [8], "stem": "small"}},
        "task": {"name": "classification"},
        "optimizer": {"name": "AdamW", "lr": 0.01},
        "scheduler": {"name": "cosine"},
        "trainer": {"epochs": 2, "batch_size": 8, "progress": False, "plot": False,
                    "root": str(tmp_path / "runs"), "name": "cls"}}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_train_evaluate_and_errors(tmp_path, capsys):
    config = classification_config(tmp_path)
    result = cli.run(["train", config, "--set", "trainer.ema_decay=0.9"])
    run = tmp_path / "runs" / "cls"
    assert result["run_dir"] == str(run) and len(json.loads((run / "metrics.json").read_text()))
    assert set(result["test"]) == {"accuracy", "loss"}
    best = str(run / "checkpoints" / "best.pt")
    metrics = cli.run(["evaluate", config, "--checkpoint", best, "--split", "test"])
    assert 0 <= metrics["accuracy"] <= 1
    assert '"accuracy"' in capsys.readouterr().out             # printed as JSON

    broken = tmp_path / "broken.pt"
    broken.write_bytes(open(best, "rb").read()[:100])
    before = open(best, "rb").read()
    assert cli.main(["evaluate", config, "--checkpoint", str(broken)]) == 2
    assert "cannot read checkpoint" in capsys.readouterr().err
    assert cli.main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert cli.main(["train", config, "--set", "trainer.epochz=3"]) == 2
    assert "unknown setting" in capsys.readouterr().err
    assert cli.main(["train", config, "--set", "model.args.in_channels=3"]) == 2
    assert "in_channels=3" in capsys.readouterr().err
    assert open(best, "rb").read() == before
    assert sorted(os.listdir(tmp_path / "runs")) == ["cls"]     # failed runs made no folder


def test_console_script_points_at_main():
    from importlib.metadata import entry_points
    scripts = {e.name: e.value for e in entry_points(group="console_scripts")}
    if "ndops-train" not in scripts:
        pytest.skip("ndops is not installed with its console scripts")
    assert scripts["ndops-train"] == "ndops.models.training.cli:main"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0


DIFFUSION_YAML = """
data: {npz: waves.npz, inputs: x, val_fraction: 0.25}
model:
  class: UNet
  args: {spatial_dims: 1, in_channels: 1, out_channels: 1, channels: [8, 16],
         time_conditioning: true, norm: group}
diffusion: {timesteps: 20, schedule: cosine}
task:
  name: diffusion
  args: {sample_every: 1, num_samples: 4, sampler: ddim, steps: 3}
trainer: {epochs: 2, batch_size: 8, ema_decay: 0.9, progress: false, plot: false,
          name: waves}
"""


def test_diffusion_train_and_sample_from_checkpoint(tmp_path, monkeypatch):
    pytest.importorskip("yaml")
    monkeypatch.chdir(tmp_path)                       # trainer.root "runs" is relative to it
    phase = np.linspace(0, 2 * np.pi, 16, dtype="float32")
    waves = np.sin(phase[None] + np.arange(32, dtype="float32")[:, None])[:, None]
    np.savez(tmp_path / "waves.npz", x=waves)
    (tmp_path / "waves.yaml").write_text(DIFFUSION_YAML)
    result = cli.run(["train", "waves.yaml"])
    run = tmp_path / "runs" / "waves"
    assert sorted(os.listdir(run / "samples")) == ["epoch_0001.png", "epoch_0002.png"]
    last = str(run / "checkpoints" / "last.pt")
    samples = cli.run(["sample", "--checkpoint", last, "--steps", "3", "--num-samples", "5",
                       "--sampler", "ddpm"])
    assert samples.shape == (5, 1, 16) and torch.isfinite(samples).all()
    assert os.path.isfile(run / "samples" / "sample_ddpm3_seed0.png")
    again = cli.run(["sample", "waves.yaml", "--checkpoint", last, "--steps", "3",
                     "--num-samples", "5", "--sampler", "ddpm", "--out", "again.png"])
    torch.testing.assert_close(again, samples)                 # same seed, same weights
    assert result["best"]["metric"] == "val_loss"


@pytest.mark.parametrize("name", sorted(os.listdir(EXAMPLE_CONFIGS)))
def test_shipped_example_configs_build_and_run_a_batch(name):
    config = builders.load_config(os.path.join(EXAMPLE_CONFIGS, name))
    data = builders.build_data(config)
    model, task = builders.build_model(config)
    settings = builders.trainer_config(config)
    builders.build_optimizer(config, model, settings, 100)
    dataset, collate = as_dataset(data["train"], "train")
    with torch.no_grad():
        model.eval()
        task.preflight(model, first_batch(dataset, collate))
