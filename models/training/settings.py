"""``TrainerConfig``: every setting of :class:`.trainer.Trainer`, validated in one place."""
import dataclasses
import numbers

_WHERE = "ndops.models.training.TrainerConfig"
AMP_MODES = (None, "bf16", "fp16")
INTERVALS = ("step", "epoch")
MODES = ("min", "max")


@dataclasses.dataclass
class TrainerConfig:
    """Settings of a training run (all JSON-serializable; stored in every checkpoint).

    Loop: ``epochs``, ``batch_size`` (per process), ``eval_batch_size`` (default
    ``batch_size``), ``shuffle``, ``drop_last`` (of the training batches), ``num_workers``
    (DataLoader worker processes), ``seed``.
    Optimization: ``lr`` and ``weight_decay`` (only used to build an AdamW when no optimizer
    is given), ``grad_clip`` (max global gradient norm, None = off), ``scheduler_interval``
    (``"step"``: the LR scheduler steps after every optimizer step, ``"epoch"``: after every
    epoch; ReduceLROnPlateau gets the monitored value).
    Precision: ``amp`` None (float32), ``"bf16"`` (autocast to bfloat16, CPU or CUDA) or
    ``"fp16"`` (CUDA only; float16 autocast with a GradScaler).
    EMA: ``ema_decay`` (None = no EMA, e.g. 0.999), ``ema_warmup``, ``eval_with_ema`` (whether
    :meth:`evaluate`, :meth:`predict`, validation and sampling use the EMA weights).
    Best checkpoint: ``monitor`` (a key of the epoch logs such as ``"val_loss"``,
    ``"val_accuracy"``, ``"val_dice"``; default: the task's choice) and ``mode`` (``"min"`` or
    ``"max"``; default: the task's choice for its metric, else ``"min"``).
    Output: ``root`` (folder holding the runs) and ``name`` (the run's folder name; when that
    folder exists, ``name-2``, ``name-3``, ... is used: earlier runs are never touched),
    ``save_every_steps`` (also write ``last.pt`` every that many steps, for mid-epoch resume),
    ``log_every_steps``, ``progress`` (progress bars, tqdm when installed), ``plot`` (draw
    ``loss.png`` at the end of ``fit`` and at most once a minute during it; needs
    matplotlib).
    Devices: ``device`` (None: CUDA if available, else CPU; under torchrun each process uses
    ``cuda:LOCAL_RANK``), ``find_unused_parameters`` (passed to DistributedDataParallel).
    """

    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int | None = None
    shuffle: bool = True
    drop_last: bool = False
    num_workers: int = 0
    seed: int = 0
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float | None = None
    scheduler_interval: str = "epoch"
    amp: str | None = None
    ema_decay: float | None = None
    ema_warmup: bool = True
    eval_with_ema: bool = True
    monitor: str | None = None
    mode: str | None = None
    root: str = "runs"
    name: str | None = None
    save_every_steps: int | None = None
    log_every_steps: int = 10
    progress: bool = True
    plot: bool = True
    device: str | None = None
    find_unused_parameters: bool = False

    def __post_init__(self):
        def check_int(name, minimum, optional=False):
            value = getattr(self, name)
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
                    or value < minimum:
                extra = " or None" if optional else ""
                raise ValueError(f"{_WHERE}: {name} must be an int >= {minimum}{extra}, got "
                                 f"{value!r}")

        def check_float(name, low, high=None, optional=False):
            value = getattr(self, name)
            if optional and value is None:
                return
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < low \
                    or (high is not None and value >= high):
                bound = f"in [{low}, {high})" if high is not None else f">= {low}"
                raise ValueError(f"{_WHERE}: {name} must be a number {bound}"
                                 f"{' or None' if optional else ''}, got {value!r}")

        for name, minimum in (("epochs", 0), ("batch_size", 1), ("num_workers", 0),
                              ("seed", 0), ("log_every_steps", 1)):
            check_int(name, minimum)
        check_int("eval_batch_size", 1, optional=True)
        check_int("save_every_steps", 1, optional=True)
        check_float("lr", 0.0)
        check_float("weight_decay", 0.0)
        check_float("grad_clip", 0.0, optional=True)
        check_float("ema_decay", 0.0, 1.0, optional=True)
        if self.amp == "none":
            self.amp = None
        for name, options in (("amp", AMP_MODES), ("scheduler_interval", INTERVALS),
                              ("mode", MODES + (None,))):
            if getattr(self, name) not in options:
                raise ValueError(f"{_WHERE}: {name} must be one of {options}, got "
                                 f"{getattr(self, name)!r}")
        for name in ("monitor", "root", "name", "device"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{_WHERE}: {name} must be a string, got {value!r}")
        if self.name is not None and (not self.name or "/" in self.name or "\\" in self.name
                                      or self.name in (".", "..")):
            raise ValueError(f"{_WHERE}: name must be a plain folder name, got {self.name!r}")

    @classmethod
    def build(cls, config=None, **overrides):
        """A TrainerConfig from another one, a dict and/or keyword overrides; unknown keys
        raise ValueError listing the valid ones."""
        values = {}
        if isinstance(config, TrainerConfig):
            values = dataclasses.asdict(config)
        elif isinstance(config, dict):
            values = dict(config)
        elif config is not None:
            raise ValueError(f"{_WHERE}: config must be a TrainerConfig or a dict, got "
                             f"{type(config).__name__}")
        values.update(overrides)
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(f"{_WHERE}: unknown setting(s) {unknown}; valid settings: "
                             f"{', '.join(valid)}")
        return cls(**values)

    def to_dict(self):
        return dataclasses.asdict(self)
