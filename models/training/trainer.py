"""``Trainer``: fit / evaluate / predict for any :class:`.tasks.Task`, with validation every
epoch, atomic ``last``/``best`` checkpoints, exact resume, AMP, EMA, gradient clipping, LR
schedulers and DistributedDataParallel under ``torchrun``."""
import math
import os
import time

import torch
from torch import nn

from . import checkpoint as ckpt
from .data import as_dataset, eval_loader, first_batch, start_epoch, to_device, train_loader
from .distributed import DistributedContext
from .ema import EMA
from .logs import RunLog, create_run_dir, format_metrics, progress_bar
from .metrics import MetricTotals
from .settings import TrainerConfig
from .state import check_resumable, load_training_state, training_state
from .tasks import Task

_WHERE = "ndops.models.training.Trainer"


class _EvalMode:
    """Puts a module in eval mode and restores every submodule's previous mode on exit."""

    def __init__(self, module):
        self.modes = [(m, m.training) for m in module.modules()]
        module.eval()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for module, training in self.modes:
            module.training = training
        return False


class Trainer:
    """Trains ``model`` on a :class:`.tasks.Task` (classification, segmentation, regression,
    diffusion, or your own).

    Args:
        model: an ``nn.Module`` (moved to the trainer's device). For diffusion, the
            ``GaussianDiffusion`` wrapper around the denoiser.
        task: what a batch holds, the loss and the metrics (``ClassificationTask()``,
            ``SegmentationTask()``, ``RegressionTask()``, ``DiffusionTask()``).
        optimizer: a torch optimizer over ``model``'s parameters (default: AdamW with the
            config's ``lr`` and ``weight_decay``).
        scheduler: an optional LR scheduler of ``optimizer``; stepped per step or per epoch
            (``scheduler_interval``).
        config: a :class:`.settings.TrainerConfig` or dict; keyword ``settings`` override it.
        callbacks: objects with optional ``on_step_end(trainer)`` / ``on_epoch_end(trainer)``
            methods (run with the global RNG state preserved, so they never change results).

    Under ``torchrun`` every process builds the same Trainer: the model is wrapped in
    DistributedDataParallel, each process reads its shard of every batch order
    (``batch_size`` is per process), metrics are summed over processes, and only rank 0
    writes logs and checkpoints. Attributes after ``fit``: ``run_dir``, ``history`` (one
    dict per epoch), ``best`` (the best epoch's monitored value), ``epoch``, ``step``.

    Example::

        trainer = Trainer(net, ClassificationTask(), epochs=20, batch_size=64, ema_decay=0.99)
        trainer.fit((x_train, y_train), (x_val, y_val))
        print(trainer.evaluate((x_test, y_test)))       # {'accuracy': ..., 'loss': ...}
        trainer.fit(train, val, resume=f"{trainer.run_dir}/checkpoints/last.pt")
    """

    def __init__(self, model, task, optimizer=None, scheduler=None, config=None, callbacks=(),
                 **settings):
        self.config = cfg = TrainerConfig.build(config, **settings)
        if not isinstance(model, nn.Module):
            raise ValueError(f"{_WHERE}: model must be an nn.Module, got {type(model).__name__}")
        if not isinstance(task, Task):
            raise ValueError(f"{_WHERE}: task must be an ndops.models.training Task (e.g. "
                             f"ClassificationTask()), got {type(task).__name__}")
        self.distributed = DistributedContext.from_env(cfg.device)
        self.device = self.distributed.device
        self._check_amp()
        self.model = model.to(self.device)
        self.task = task
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"{_WHERE}: the model has no trainable parameters")
        self.optimizer = optimizer if optimizer is not None else torch.optim.AdamW(
            params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = scheduler
        self.scaler = torch.amp.GradScaler("cuda") if cfg.amp == "fp16" else None
        self.train_model = self.model
        if self.distributed.enabled:
            ids = [self.device] if self.device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=ids, find_unused_parameters=cfg.find_unused_parameters)
        # After the DDP wrap (which broadcasts rank 0's weights) so every EMA starts equal.
        self.ema = None if cfg.ema_decay is None else EMA(self.model, cfg.ema_decay,
                                                           cfg.ema_warmup)
        self.callbacks = list(callbacks)
        default_key, default_mode = task.default_monitor
        self.monitor = cfg.monitor or default_key
        self.mode = cfg.mode or (default_mode if self.monitor == default_key else "min")
        self.epoch = self.step = self.step_in_epoch = 0
        self.best, self.history, self.step_history = None, [], []
        self.epoch_totals = {}
        self.run_dir = None
        self.log = RunLog(None, enabled=self.distributed.is_main)
        self._plotted = time.monotonic()

    # ----- setup -----
    def _check_amp(self):
        amp, kind = self.config.amp, self.device.type
        if amp == "fp16" and kind != "cuda":
            raise ValueError(f"{_WHERE}: amp='fp16' needs a CUDA device (float16 autocast with "
                             f"a GradScaler); on {kind} use amp='bf16' or None")
        if amp == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"{_WHERE}: amp='bf16' is not supported by this GPU; use 'fp16'")

    def autocast(self):
        """The autocast context of the configured precision (a no-op for float32)."""
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.config.amp)
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def eval_model(self, use_ema=None):
        """The module used by evaluate/predict/sampling: the EMA copy when EMA is on and
        ``use_ema`` (default: the config's ``eval_with_ema``), else the trained model."""
        use = self.config.eval_with_ema if use_ema is None else use_ema
        if use_ema and self.ema is None:
            raise ValueError(f"{_WHERE}: use_ema=True but the trainer keeps no EMA (set "
                             "ema_decay)")
        return self.ema.module if use and self.ema is not None else self.model

    def _preflight(self, dataset, collate_fn, role):
        """Checks the data against the model on two samples before anything is written."""
        batch = to_device(first_batch(dataset, collate_fn), self.device)
        try:
            with ckpt.preserved_rng(), _EvalMode(self.model), torch.no_grad(), self.autocast():
                self.task.preflight(self.model, batch)
                generator = torch.Generator(self.device).manual_seed(0)
                return set(self.task.evaluation_step(self.model, batch, generator))
        except ValueError as err:
            raise ValueError(f"{err} (in the {role} data)") from err

    def _open_run(self, resume):
        """The run folder: the one holding the resumed checkpoint, else a new one."""
        folder = None
        if self.distributed.is_main:
            parent = (os.path.dirname(os.fspath(resume)) or os.curdir) if resume else None
            if parent and os.path.basename(os.path.abspath(parent)) == "checkpoints":
                folder = os.path.normpath(os.path.join(parent, os.pardir))
            else:
                folder = create_run_dir(self.config.root, self.config.name or self.task.name)
        self.run_dir = self.distributed.broadcast_object(folder)
        self.log = RunLog(self.run_dir, enabled=self.distributed.is_main)
        if self.distributed.is_main:
            os.makedirs(self.checkpoint_dir, exist_ok=True)

    @property
    def checkpoint_dir(self):
        return None if self.run_dir is None else os.path.join(self.run_dir, "checkpoints")

    # ----- training -----
    def fit(self, train, val=None, resume=None):
        """Trains until ``config.epochs`` epochs are done, validating on ``val`` after each
        (Dataset, tensor, tuple of tensors or DataLoader; None skips validation and the best
        checkpoint then follows the training metric). ``resume``: a checkpoint path; training
        continues exactly where it was written (also mid-epoch) and the logs of its run
        folder are extended. Returns the history (one dict of metrics per epoch)."""
        cfg = self.config
        train_set, train_collate = as_dataset(train, "train")
        val_data = None if val is None else as_dataset(val, "validation")
        state = None
        if resume is not None:
            # On the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest.
            state = ckpt.load_checkpoint(resume, map_location="cpu")
            check_resumable(state, self)
        keys = self._preflight(train_set, train_collate, "train")
        if val_data is not None:
            self._preflight(*val_data, "validation")
        split, _, metric = self.monitor.partition("_")
        if split not in ("train", "val") or metric not in keys:
            raise ValueError(f"{_WHERE}: monitor={self.monitor!r} is not a metric of the "
                             f"{self.task.name} task; choose one of "
                             f"{sorted(s + '_' + k for k in keys for s in ('train', 'val'))}")
        # Without validation data the best checkpoint follows the training metric.
        monitor = f"train_{metric}" if val_data is None else self.monitor
        if state is None and self.epoch >= cfg.epochs:
            self.log.message(f"nothing to train: {self.epoch} of epochs={cfg.epochs} are done "
                             "(raise trainer.config.epochs to train further)")
            return self.history
        if state is not None:
            load_training_state(self, state)
        self._open_run(resume)
        if state is None:
            self.log.write_config({"trainer": cfg.to_dict(), "task": self.task.describe(),
                                   "model": ckpt.describe_model(self.model),
                                   "world_size": self.distributed.world_size})
            ckpt.seed_everything(cfg.seed + self.distributed.rank)
        else:
            self.log.message(f"resumed from {resume}: {self.step_in_epoch} steps into epoch "
                             f"{self.epoch + 1}, global step {self.step}")
        loader, sampler, generator = train_loader(train_set, train_collate, cfg, self.distributed)
        per_epoch = (math.floor if cfg.drop_last else math.ceil)(sampler.num_samples
                                                                 / cfg.batch_size)
        self.log.message(f"run {self.run_dir}: {len(train_set)} train / "
                         f"{len(val_data[0]) if val_data else 0} validation samples, "
                         f"{per_epoch} steps per epoch x {self.distributed.world_size} "
                         f"process(es), device {self.device}, amp {cfg.amp}")
        while self.epoch < cfg.epochs:
            start_epoch(sampler, generator, cfg.seed, self.epoch, self.step_in_epoch,
                        cfg.batch_size)
            started = time.perf_counter()
            train_metrics = self._train_epoch(loader, per_epoch)
            row = {"epoch": self.epoch + 1, "step": self.step}
            row.update({f"train_{k}": v for k, v in train_metrics.items()})
            if val_data is not None:
                row.update({f"val_{k}": v for k, v in self._evaluate(*val_data).items()})
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            row["seconds"] = round(time.perf_counter() - started, 3)
            self._end_epoch(row, monitor)
        return self.history

    def _train_epoch(self, loader, per_epoch):
        cfg = self.config
        totals = MetricTotals(self.epoch_totals)
        show = cfg.progress and self.distributed.is_main
        bar, printer = progress_bar(per_epoch, self.step_in_epoch,
                                    f"epoch {self.epoch + 1}/{cfg.epochs}", show,
                                    cfg.log_every_steps)
        self.log.set_printer(printer)
        self.train_model.train()
        try:
            for batch in loader:
                self.task.check_batch(self.model, batch)
                loss, stats = self._train_step(to_device(batch, self.device))
                totals.add(stats)
                self.step += 1
                self.step_in_epoch += 1
                if self.scheduler is not None and cfg.scheduler_interval == "step":
                    self.scheduler.step()
                if self.step % cfg.log_every_steps == 0:
                    self._log_step(loss, bar)
                bar.update(1)
                if cfg.save_every_steps and self.step % cfg.save_every_steps == 0:
                    self.epoch_totals = totals.state()
                    self.save_checkpoint()
                self._run_callbacks("on_step_end")
        finally:
            bar.close()
            self.log.set_printer(None)
        return totals.reduce(self.distributed)

    def _train_step(self, batch):
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss, stats = self.task.training_step(self.train_model, batch)
        if not torch.is_tensor(loss) or loss.dim() != 0:
            raise ValueError(f"{_WHERE}: the task's training_step must return a scalar loss "
                             f"tensor, got {getattr(loss, 'shape', type(loss).__name__)}")
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if cfg.grad_clip is not None:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return loss.detach(), stats

    def _log_step(self, loss, bar):
        value = float(self.distributed.all_reduce_sum(loss.double().reshape(1))[0]
                      / self.distributed.world_size)
        if not math.isfinite(value):
            raise FloatingPointError(
                f"{_WHERE}: the training loss is {value} at step {self.step} (epoch "
                f"{self.epoch + 1}); lower the learning rate, enable grad_clip, or check the "
                f"data. The last checkpoint is in {self.checkpoint_dir}")
        lr = self.optimizer.param_groups[0]["lr"]
        self.step_history.append({"step": self.step, "epoch": self.epoch + 1, "loss": value,
                                  "lr": lr})
        bar.set_postfix({"loss": f"{value:.4g}", "lr": f"{lr:.3g}"})

    def _end_epoch(self, row, monitor):
        self.epoch += 1
        self.step_in_epoch = 0
        self.epoch_totals = {}
        value = row.get(monitor)
        if self.scheduler is not None and self.config.scheduler_interval == "epoch":
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(value)
            else:
                self.scheduler.step()
        self.history.append(row)
        improved = value is not None and math.isfinite(value) and (
            self.best is None or (value < self.best["value"] if self.mode == "min"
                                  else value > self.best["value"]))
        if improved:
            self.best = {"metric": monitor, "mode": self.mode, "value": value,
                         "epoch": self.epoch, "step": self.step}
        self.save_checkpoint(best=improved)
        last_epoch = self.epoch == self.config.epochs
        plot = self.config.plot and (last_epoch or time.monotonic() - self._plotted > 60)
        if self.distributed.is_main:
            self.log.write_history(self.history, self.step_history, plot)
        if plot:
            self._plotted = time.monotonic()
        shown = {k: v for k, v in row.items() if k not in ("epoch", "step")}
        self.log.message(f"epoch {self.epoch}/{self.config.epochs}  {format_metrics(shown)}"
                         + ("  (best)" if improved else ""))
        with ckpt.preserved_rng():
            self.task.on_epoch_end(self)
        self._run_callbacks("on_epoch_end")

    def _run_callbacks(self, hook):
        if not self.callbacks:
            return
        with ckpt.preserved_rng():
            for callback in self.callbacks:
                if hasattr(callback, hook):
                    getattr(callback, hook)(self)

    # ----- checkpoints -----
    def save_checkpoint(self, best=False):
        """Writes ``checkpoints/last.pt`` (and a copy as ``best.pt`` when ``best``) on rank 0;
        every process must call it (it gathers each process's RNG state)."""
        state = training_state(self)
        if self.distributed.is_main:
            last = os.path.join(self.checkpoint_dir, "last.pt")
            ckpt.save_checkpoint(state, last)
            if best:
                ckpt.copy_atomic(last, os.path.join(self.checkpoint_dir, "best.pt"))
        self.distributed.barrier()

    # ----- evaluation -----
    def evaluate(self, data, use_ema=None):
        """Metrics of the task over ``data`` (summed over all processes under torchrun), as
        ``{name: value}``; uses the EMA weights by default when EMA is on."""
        return self._evaluate(*as_dataset(data, "evaluation"), use_ema=use_ema)

    def _evaluate(self, dataset, collate_fn, use_ema=None):
        model = self.eval_model(use_ema)
        batch_size = self.config.eval_batch_size or self.config.batch_size
        loader = eval_loader(dataset, collate_fn, batch_size, self.distributed,
                             self.config.num_workers)
        # The same draws every epoch (e.g. diffusion noise), so validation losses compare.
        generator = torch.Generator(self.device).manual_seed(self.config.seed
                                                             + 7919 * self.distributed.rank)
        totals = MetricTotals()
        with _EvalMode(model), torch.no_grad(), self.autocast():
            for batch in loader:
                self.task.check_batch(model, batch)
                totals.add(self.task.evaluation_step(model, to_device(batch, self.device),
                                                     generator))
        return totals.reduce(self.distributed)

    def predict(self, data, use_ema=None, batch_size=None):
        """The model outputs for every sample of ``data`` in order (concatenated, on the
        CPU). Every process predicts all of ``data``; no communication."""
        dataset, collate_fn = as_dataset(data, "prediction")
        model = self.eval_model(use_ema)
        batch_size = batch_size or self.config.eval_batch_size or self.config.batch_size
        loader = eval_loader(dataset, collate_fn, batch_size, self.distributed, shard=False)
        outputs = []
        with _EvalMode(model), torch.no_grad(), self.autocast():
            for batch in loader:
                batch = to_device(batch, self.device)
                outputs.append(self.task.predict_step(model, batch).float().cpu())
        return torch.cat(outputs)
