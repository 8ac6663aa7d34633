"""Run folders, text/CSV/JSON logs, the loss-curve PNG and progress bars.

A run folder holds::

    config.json        the trainer settings, task and model description
    train.log          every message printed during training (appended, also on resume)
    metrics.csv/.json  one row per epoch (train_*, val_*, lr, time)
    steps.csv          the training loss every ``log_every_steps`` steps
    loss.png           loss curves (needs matplotlib)
    checkpoints/       last.pt, best.pt
"""
import csv
import io
import json
import math
import os
import sys
import time

from .checkpoint import atomic_write

_WHERE = "ndops.models.training"


def create_run_dir(root, name):
    """Creates and returns a NEW folder ``root/name`` (``root/name-2``, ``-3``, ... when taken;
    ``os.mkdir`` fails on existing folders, so concurrent runs never share one)."""
    os.makedirs(root, exist_ok=True)
    for index in range(1, 100_000):
        path = os.path.join(root, name if index == 1 else f"{name}-{index}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"{_WHERE}: could not find a free run folder name for {name!r} in {root}")


def _write_text(path, text):
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _json_default(value):
    return str(value)


def _clean(value):
    """JSON-safe numbers: NaN and infinities become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _csv_text(rows):
    columns = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class RunLog:
    """Writes a run folder's logs. Only the main process (``enabled``) writes or prints."""

    def __init__(self, run_dir, enabled=True):
        self.run_dir, self.enabled = run_dir, enabled
        self._printer = print

    def set_printer(self, printer):
        """Where messages go (e.g. ``tqdm.write`` while a progress bar is shown)."""
        self._printer = printer or print

    def message(self, text):
        if not self.enabled:
            return
        self._printer(text)
        if self.run_dir is not None:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            with open(os.path.join(self.run_dir, "train.log"), "a", encoding="utf-8") as f:
                f.write(f"{stamp} {text}\n")

    def write_config(self, record):
        if self.enabled:
            _write_text(os.path.join(self.run_dir, "config.json"),
                        json.dumps(record, indent=2, sort_keys=True, default=_json_default)
                        + "\n")

    def write_history(self, epochs, steps, plot=True):
        """Rewrites metrics.csv, metrics.json, steps.csv (and loss.png when ``plot``) from the
        full history (kept in every checkpoint, so a resumed run's logs match its state
        exactly)."""
        if not self.enabled:
            return
        _write_text(os.path.join(self.run_dir, "metrics.json"),
                    json.dumps([{k: _clean(v) for k, v in row.items()} for row in epochs],
                               indent=1) + "\n")
        if epochs:
            _write_text(os.path.join(self.run_dir, "metrics.csv"), _csv_text(epochs))
        if steps:
            _write_text(os.path.join(self.run_dir, "steps.csv"), _csv_text(steps))
        if plot:
            plot_losses(os.path.join(self.run_dir, "loss.png"), epochs, steps)


def plot_losses(path, epochs, steps):
    """Training loss per logged step and per epoch, validation loss per epoch, against the
    optimizer step. Skipped (returns False) when matplotlib is not installed."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    figure = Figure(figsize=(6.4, 4.0), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    if steps:
        axes.plot([s["step"] for s in steps], [s["loss"] for s in steps], lw=0.8, alpha=0.5,
                  label="train (steps)")
    for key, label in (("train_loss", "train (epoch)"), ("val_loss", "validation")):
        points = [(row["step"], row[key]) for row in epochs if row.get(key) is not None]
        if points:
            axes.plot(*zip(*points), marker="o", label=label)
    axes.set_xlabel("optimizer step")
    axes.set_ylabel("loss")
    values = [s["loss"] for s in steps] + [row.get("train_loss") for row in epochs]
    if values and all(v is not None and v > 0 for v in values):
        axes.set_yscale("log")
    axes.grid(alpha=0.3)
    if axes.lines:
        axes.legend()
    figure.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.96)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic_write(path, lambda f: f.write(buffer.getvalue()))
    return True


class _PlainProgress:
    """Progress without tqdm: a line every ``every`` steps and at the end."""

    def __init__(self, total, initial, desc, every):
        self.total, self.count, self.desc, self.every = total, initial, desc, every
        self.postfix = ""

    def update(self, n=1):
        self.count += n
        if self.count % self.every == 0 or self.count == self.total:
            print(f"{self.desc} {self.count}/{self.total} {self.postfix}".rstrip(), flush=True)

    def set_postfix(self, values):
        self.postfix = " ".join(f"{k} {v}" for k, v in values.items())

    def close(self):
        pass


class _NoProgress(_PlainProgress):
    def update(self, n=1):
        self.count += n


def progress_bar(total, initial, desc, enabled, every):
    """(bar, printer): a tqdm bar when tqdm is installed and ``enabled``, else plain lines
    every ``every`` steps (or nothing when disabled); ``printer`` prints without breaking
    the bar."""
    if not enabled:
        return _NoProgress(total, initial, desc, every), print
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _PlainProgress(total, initial, desc, every), print
    bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=False,
               file=sys.stderr)
    return bar, tqdm.write


def format_metrics(values):
    """``key value`` pairs, numbers with 4 significant digits."""
    parts = []
    for key, value in values.items():
        parts.append(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}")
    return "  ".join(parts)
