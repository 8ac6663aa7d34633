"""Tasks: what a batch holds, which loss to minimize and which metrics to report.

The :class:`.trainer.Trainer` is task-agnostic: it calls ``task.training_step(model, batch)``
for the loss, ``task.evaluation_step`` for validation metrics and ``task.predict_step`` for
predictions. Batches are a tensor ``x``, a tuple/list ``(x, target, ...)`` or a dict with
``"input"`` and ``"target"`` keys (what a ``TensorDataset`` or a dict dataset yields).

Metric names in the logs are ``train_<name>`` and ``val_<name>``; every task reports
``loss``. Each task also names the metric its best checkpoint should follow
(``default_monitor``), which ``TrainerConfig.monitor``/``mode`` override.
"""
import torch
import torch.nn.functional as F
from torch import nn

from . import metrics as M

_WHERE = "ndops.models.training"


def unwrap(model):
    """The module inside a DistributedDataParallel (or DataParallel) wrapper."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel,
                                              nn.DataParallel)) else model


def split_batch(batch):
    """(inputs, target) of a batch; target is None for a bare tensor or a 1-tuple."""
    if torch.is_tensor(batch):
        return batch, None
    if isinstance(batch, (list, tuple)) and batch:
        return batch[0], (batch[1] if len(batch) > 1 else None)
    if isinstance(batch, dict) and "input" in batch:
        return batch["input"], batch.get("target")
    raise ValueError(f"{_WHERE}: a batch must be a tensor, a tuple/list (inputs, target, ...) "
                     f"or a dict with 'input' (and 'target') keys, got {type(batch).__name__}")


def _shape(value):
    return tuple(value.shape) if torch.is_tensor(value) else type(value).__name__


def check_inputs(model, inputs, in_channels=None):
    """Clear errors for inputs that cannot be right: not a floating tensor with a channel dim,
    or a channel count different from the model's ``in_channels`` attribute."""
    if not torch.is_tensor(inputs) or not inputs.is_floating_point() or inputs.dim() < 2:
        raise ValueError(f"{_WHERE}: the batch inputs must be a floating tensor (B, C, ...), "
                         f"got {getattr(inputs, 'dtype', '')} {_shape(inputs)}")
    expected = in_channels if in_channels is not None else getattr(unwrap(model), "in_channels",
                                                                   None)
    if isinstance(expected, int) and inputs.shape[1] != expected:
        raise ValueError(f"{_WHERE}: the batch inputs have {inputs.shape[1]} channels (shape "
                         f"{tuple(inputs.shape)}) but the model expects in_channels={expected}")


def _check_labels(target, count, what):
    """Labels must lie in [0, count) (skipped while count is unknown)."""
    if count is None or not target.numel():
        return
    low, high = target.min().item(), target.max().item()
    if low < 0 or high >= count:
        raise ValueError(f"{_WHERE}: {what} must lie in [0, {count}) for a model with {count} "
                         f"output channels, got values in [{low}, {high}]")


class Task:
    """Base class. Subclasses implement :meth:`training_step`, :meth:`evaluation_step` and
    :meth:`predict_step`; :meth:`check_batch` raises clear errors for malformed batches."""

    name = "task"
    default_monitor = ("val_loss", "min")

    def check_batch(self, model, batch):
        """Raises ValueError for a batch this task cannot use. Called on every batch as the
        loader yields it (before the move to the device, so value checks cost no GPU sync)."""

    def preflight(self, model, batch):
        """Thorough checks on a small first batch before anything is written: the batch, one
        forward pass of ``model`` (called in eval mode, under no_grad) and the values (e.g.
        label ranges). Raises ValueError with a clear message."""
        self.check_batch(model, batch)

    def training_step(self, model, batch):
        """(loss to backpropagate, {metric: (total, count)})."""
        raise NotImplementedError

    def evaluation_step(self, model, batch, generator=None):
        """{metric: (total, count)} for one batch (called under no_grad, model in eval
        mode); ``generator`` seeds any randomness so validation is comparable over epochs."""
        raise NotImplementedError

    def predict_step(self, model, batch):
        """The model's output for one batch."""
        raise NotImplementedError

    def describe(self):
        """A JSON-serializable record of the task (stored in checkpoints and configs)."""
        return {"name": self.name}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    def on_epoch_end(self, trainer):
        """Called on every process after each epoch's validation and checkpoint."""


class SupervisedTask(Task):
    """``output = model(inputs)``, ``loss = loss_fn(output, target)`` plus named metrics
    (keys of :data:`.metrics.METRICS`, or ``name: fn`` pairs where ``fn(output, target)``
    returns ``(total, count)``)."""

    name = "supervised"

    def __init__(self, loss_fn, metrics=(), metric_kwargs=None):
        self.loss_fn = loss_fn
        self.metric_kwargs = dict(metric_kwargs or {})
        self.metrics = {}
        for metric in metrics:
            if isinstance(metric, str):
                if metric not in M.METRICS:
                    raise ValueError(f"{_WHERE}: unknown metric {metric!r}; valid metrics: "
                                     f"{', '.join(M.METRICS)}")
                self.metrics[metric] = M.METRICS[metric]
            else:
                name, fn = metric
                self.metrics[name] = fn

    def _split(self, batch):
        inputs, target = split_batch(batch)
        if target is None:
            raise ValueError(f"{_WHERE}: the {self.name} task needs (inputs, target) batches, "
                             "got inputs only")
        return inputs, target

    # Output channels seen in the preflight (e.g. the number of classes), for label checks.
    output_channels = None

    def check_batch(self, model, batch):
        inputs, target = self._split(batch)
        check_inputs(model, inputs)
        if not torch.is_tensor(target):
            raise ValueError(f"{_WHERE}: the batch target must be a tensor, got "
                             f"{type(target).__name__}")
        if target.shape[0] != inputs.shape[0]:
            raise ValueError(f"{_WHERE}: the batch has {inputs.shape[0]} inputs but "
                             f"{target.shape[0]} targets")
        self.check_target(target)

    def check_target(self, target):
        """Raises ValueError for target values the model cannot fit (e.g. labels >= the
        number of classes)."""

    def check_output(self, output, target):
        """Raises ValueError when the model output's shape does not fit the target (every
        step, no device sync)."""

    def preflight(self, model, batch):
        self.check_batch(model, batch)
        inputs, target = self._split(batch)
        try:
            output = model(inputs)
        except Exception as err:
            raise ValueError(f"{_WHERE}: the model fails on a batch of inputs of shape "
                             f"{tuple(inputs.shape)}: {type(err).__name__}: {err}") from err
        self.check_output(output, target)
        self.output_channels = output.shape[1] if output.dim() > 1 else None
        self.check_target(target)

    def _stats(self, output, target, loss):
        batch = target.shape[0]
        stats = {"loss": (loss.detach().double() * batch, batch)}
        for name, fn in self.metrics.items():
            stats[name] = fn(output, target, **self.metric_kwargs.get(name, {}))
        return stats

    def training_step(self, model, batch):
        inputs, target = self._split(batch)
        output = model(inputs)
        self.check_output(output, target)
        loss = self.loss_fn(output.float(), target)
        return loss, self._stats(output, target, loss)

    def evaluation_step(self, model, batch, generator=None):
        return self.training_step(model, batch)[1]

    def predict_step(self, model, batch):
        inputs = split_batch(batch)[0]
        return model(inputs)

    def describe(self):
        return {"name": self.name, "metrics": list(self.metrics)}


class ClassificationTask(SupervisedTask):
    """Classification: ``model(x)`` returns logits (B, K), the target is (B,) class indices;
    cross-entropy loss (``label_smoothing``, optional per-class ``weight``); reports loss and
    accuracy; the best checkpoint follows ``val_accuracy`` (max)."""

    name = "classification"
    default_monitor = ("val_accuracy", "max")

    def __init__(self, label_smoothing=0.0, weight=None):
        self.label_smoothing = float(label_smoothing)
        self.weight = None if weight is None else torch.as_tensor(weight, dtype=torch.float32)

        def loss_fn(logits, target):
            weight = None if self.weight is None else self.weight.to(logits.device)
            return F.cross_entropy(logits, target, weight=weight,
                                   label_smoothing=self.label_smoothing)
        super().__init__(loss_fn, metrics=("accuracy",))

    def check_target(self, target):
        if target.dim() != 1 or target.is_floating_point():
            raise ValueError(f"{_WHERE}: classification targets must be (B,) integer class "
                             f"indices, got {target.dtype} {tuple(target.shape)}")
        _check_labels(target, self.output_channels, "class labels")

    def check_output(self, output, target):
        if output.dim() != 2:
            raise ValueError(f"{_WHERE}: a classifier must return logits (B, num_classes), got "
                             f"{tuple(output.shape)}")

    def describe(self):
        return {"name": self.name, "label_smoothing": self.label_smoothing}


def soft_dice_loss(logits, target, include_background=False, eps=1e-5):
    """1 - soft Dice of the predicted probabilities (softmax over K, or sigmoid for K == 1)
    against the one-hot target, averaged over classes and samples."""
    if logits.shape[1] == 1:
        prob = torch.sigmoid(logits)
        onehot = target.reshape(prob.shape).to(prob.dtype)
        prob, onehot = torch.cat([1 - prob, prob], 1), torch.cat([1 - onehot, onehot], 1)
    else:
        prob = torch.softmax(logits, 1)
        onehot = F.one_hot(target.long(), logits.shape[1]).movedim(-1, 1).to(prob.dtype)
    if not include_background:
        prob, onehot = prob[:, 1:], onehot[:, 1:]
    inter = (prob * onehot).flatten(2).sum(2)
    total = prob.flatten(2).sum(2) + onehot.flatten(2).sum(2)
    return 1 - ((2 * inter + eps) / (total + eps)).mean()


class SegmentationTask(SupervisedTask):
    """Dense classification at any N: ``model(x)`` returns logits (B, K, *spatial); the target
    is (B, *spatial) integer labels in [0, K) (for K == 1, binary 0/1 labels of shape
    (B, *spatial) or (B, 1, *spatial)). ``loss``: ``"ce"`` (cross-entropy; BCE for K == 1),
    ``"dice"`` (soft Dice) or ``"ce+dice"``. Reports loss, Dice, IoU (mean over foreground
    classes unless ``include_background``) and pixel accuracy; best by ``val_dice`` (max)."""

    name = "segmentation"
    default_monitor = ("val_dice", "max")
    LOSSES = ("ce", "dice", "ce+dice")

    def __init__(self, loss="ce+dice", include_background=False):
        if loss not in self.LOSSES:
            raise ValueError(f"{_WHERE}: segmentation loss must be one of {self.LOSSES}, got "
                             f"{loss!r}")
        self.loss, self.include_background = loss, bool(include_background)

        def loss_fn(logits, target):
            total = 0.0
            if "ce" in loss.split("+"):
                if logits.shape[1] == 1:
                    total = F.binary_cross_entropy_with_logits(
                        logits, target.reshape(logits.shape).to(logits.dtype))
                else:
                    total = F.cross_entropy(logits, target.long())
            if "dice" in loss.split("+"):
                total = total + soft_dice_loss(logits, target, include_background)
            return total
        kwargs = {"include_background": self.include_background}
        super().__init__(loss_fn, metrics=("dice", "iou", "accuracy"),
                         metric_kwargs={"dice": kwargs, "iou": kwargs})

    def check_target(self, target):
        if self.output_channels is None:
            return
        if self.output_channels > 1 and target.is_floating_point():
            raise ValueError(f"{_WHERE}: multi-class segmentation targets must be integer "
                             f"labels, got {target.dtype}")
        _check_labels(target, max(self.output_channels, 2), "segmentation labels")

    def check_output(self, output, target):
        spatial = tuple(output.shape[2:])
        binary = output.shape[1] == 1
        ok = tuple(target.shape) == (output.shape[0],) + spatial or (
            binary and tuple(target.shape) == (output.shape[0], 1) + spatial)
        if not ok:
            raise ValueError(f"{_WHERE}: segmentation targets must be (B, *spatial) = "
                             f"{(output.shape[0],) + spatial} labels for logits "
                             f"{tuple(output.shape)}, got {tuple(target.shape)}")

    def describe(self):
        return {"name": self.name, "loss": self.loss,
                "include_background": self.include_background}


REGRESSION_LOSSES = {"mse": F.mse_loss, "l1": F.l1_loss, "smooth_l1": F.smooth_l1_loss}


class RegressionTask(SupervisedTask):
    """Dense (or vector) regression, e.g. denoising: the target has the output's shape;
    ``loss`` ``"mse"``, ``"l1"`` or ``"smooth_l1"``; reports loss and PSNR (with
    ``data_range``, the span of the clean signal); best by ``val_psnr`` (max)."""

    name = "regression"
    default_monitor = ("val_psnr", "max")

    def __init__(self, loss="mse", data_range=1.0):
        if loss not in REGRESSION_LOSSES:
            raise ValueError(f"{_WHERE}: regression loss must be one of "
                             f"{tuple(REGRESSION_LOSSES)}, got {loss!r}")
        if not data_range > 0:
            raise ValueError(f"{_WHERE}: data_range must be > 0, got {data_range!r}")
        self.loss, self.data_range = loss, float(data_range)
        fn = REGRESSION_LOSSES[loss]
        super().__init__(lambda out, target: fn(out, target.to(out.dtype)), metrics=("psnr",),
                         metric_kwargs={"psnr": {"data_range": self.data_range}})

    def check_output(self, output, target):
        # F.mse_loss would broadcast (B, 1, L) against (B, L) silently: insist on equal shapes.
        if output.shape != target.shape:
            raise ValueError(f"{_WHERE}: regression targets must have the model output's shape "
                             f"{tuple(output.shape)}, got {tuple(target.shape)}")

    def describe(self):
        return {"name": self.name, "loss": self.loss, "data_range": self.data_range}
