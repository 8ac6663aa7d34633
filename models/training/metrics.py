"""Metrics that add up exactly over batches and processes.

Every metric function returns ``(total, count)``: a sum over the samples (or elements) of a
batch and how many there were. :class:`MetricTotals` adds these up over an epoch and, under
torch.distributed, over every process; the reported value is ``total / count``, so an epoch's
accuracy is the accuracy over all its samples, not a mean of per-batch means.
"""
import math

import torch

_WHERE = "ndops.models.training.metrics"


def _labels(logits, target_dims):
    """Predicted labels from logits (B, K, *spatial): argmax over K, or ``logit > 0`` when
    K == 1 (binary); the channel dim is dropped when the target has none."""
    if logits.shape[1] == 1:
        labels = (logits > 0).long()
        return labels.squeeze(1) if target_dims == logits.dim() - 1 else labels
    return logits.argmax(1)


def accuracy(logits, target):
    """Correct predictions: ``logits`` (B, K) with ``target`` (B,) class indices, or dense
    logits (B, K, *spatial) with ``target`` (B, *spatial) (pixel accuracy). K == 1 means a
    binary decision ``logit > 0``. Returns (number correct, number of predictions)."""
    labels = _labels(logits.detach(), target.dim())
    correct = (labels == target).sum()
    return correct.double(), target.numel()


def _per_class_overlap(logits, target, num_classes):
    """(intersection, predicted, true) voxel counts, each (B, num_classes)."""
    labels = _labels(logits.detach(), target.dim())
    if target.dim() == logits.dim():          # (B, 1, *spatial) binary target
        target = target.squeeze(1)
        labels = labels.squeeze(1)
    classes = torch.arange(num_classes, device=logits.device)
    shape = (1, num_classes) + (1,) * (target.dim() - 1)
    pred = labels.unsqueeze(1) == classes.reshape(shape)
    true = target.long().unsqueeze(1) == classes.reshape(shape)
    inter = (pred & true).flatten(2).sum(2).double()
    return inter, pred.flatten(2).sum(2).double(), true.flatten(2).sum(2).double()


def _overlap_score(logits, target, include_background, score):
    num_classes = max(logits.shape[1], 2)
    inter, pred, true = _per_class_overlap(logits, target, num_classes)
    first = 0 if include_background else 1
    value = score(inter[:, first:], pred[:, first:], true[:, first:])
    # A class absent from both the prediction and the target has no score (0 / 0): it is left
    # out of the sample's mean; a sample with no defined class is left out of the count.
    defined = (pred[:, first:] + true[:, first:]) > 0
    per_class = torch.where(defined, value, torch.zeros_like(value))
    counts = defined.sum(1)
    has_any = counts > 0
    per_sample = per_class.sum(1)[has_any] / counts[has_any]
    return per_sample.sum(), int(has_any.sum())


def dice(logits, target, include_background=False):
    """Dice coefficient ``2 |P & T| / (|P| + |T|)`` per sample, averaged over the classes
    present in the prediction or the target. ``logits`` (B, K, *spatial) (K == 1: binary,
    ``logit > 0``); ``target`` (B, *spatial) int labels (or (B, 1, *spatial) for K == 1).
    ``include_background``: also score class 0. Returns (sum of per-sample Dice, samples)."""
    return _overlap_score(logits, target, include_background,
                          lambda i, p, t: 2 * i / (p + t).clamp(min=1))


def iou(logits, target, include_background=False):
    """Intersection over union ``|P & T| / |P | T|`` (Jaccard), like :func:`dice`."""
    return _overlap_score(logits, target, include_background,
                          lambda i, p, t: i / (p + t - i).clamp(min=1))


def psnr(prediction, target, data_range=1.0):
    """Peak signal-to-noise ratio ``10 log10(data_range^2 / MSE)`` in dB, per sample (the MSE
    is over all of a sample's channels and positions; an exact match counts as 100 dB
    rather than infinity). Returns (sum of per-sample PSNR, samples)."""
    diff = prediction.detach().double() - target.detach().double()
    mse = diff.pow(2).flatten(1).mean(1).clamp(min=data_range ** 2 * 1e-10)
    values = 10.0 * torch.log10(data_range ** 2 / mse)
    return values.sum(), prediction.shape[0]


def denoising_psnr(denoise, noisy, clean, data_range=1.0):
    """How much ``denoise`` improves ``noisy`` (B, C, *spatial) toward ``clean``: the mean
    per-sample :func:`psnr` in dB of ``noisy`` and of ``denoise(noisy)`` against ``clean``,
    as ``(noisy_db, denoised_db)`` floats. ``denoise`` maps the batch to outputs of its shape
    (for example ``Trainer.predict``)."""
    denoised = denoise(noisy)
    before, count = psnr(noisy, clean, data_range)
    after, _ = psnr(denoised, clean, data_range)
    return before.item() / count, after.item() / count


METRICS = {"accuracy": accuracy, "dice": dice, "iou": iou, "psnr": psnr}


class MetricTotals:
    """Running ``(total, count)`` per metric name; ``add`` takes the pairs the metric
    functions return (totals may stay tensors on the device: no sync per batch)."""

    def __init__(self, totals=None):
        self._totals = {}
        for name, (total, count) in (totals or {}).items():
            self._totals[name] = [float(total), float(count)]

    def add(self, stats):
        for name, (total, count) in stats.items():
            entry = self._totals.setdefault(name, [0.0, 0.0])
            entry[0] = entry[0] + (total.detach().double() if torch.is_tensor(total) else total)
            entry[1] = entry[1] + float(count)

    def state(self):
        """Plain floats (for a checkpoint): {name: (total, count)}."""
        return {name: (float(t), float(c)) for name, (t, c) in self._totals.items()}

    def reduce(self, distributed=None):
        """Sums every total and count over the processes of ``distributed`` (a
        :class:`.distributed.DistributedContext`, or None) and returns {name: total / count}
        (NaN where the count is 0)."""
        names = sorted(self._totals)
        values = torch.tensor([[float(self._totals[n][0]), self._totals[n][1]] for n in names],
                              dtype=torch.float64).reshape(-1, 2)
        if distributed is not None and distributed.enabled:
            values = distributed.all_reduce_sum(values)
        return {n: (t / c if c > 0 else math.nan) for n, (t, c) in zip(names, values.tolist())}

    def latest(self, name):
        """The current mean of one metric on this process (for progress bars)."""
        total, count = self._totals.get(name, (0.0, 0.0))
        return float(total) / count if count else math.nan
