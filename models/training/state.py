"""What a training checkpoint holds, and putting it back into a :class:`.trainer.Trainer`.

Everything needed to continue EXACTLY: model, optimizer, LR scheduler, grad scaler and EMA
states; the epoch, the global step and the step within the epoch (the data order is a
function of the seed and the epoch, so skipping that many batches reproduces the rest of
the epoch); every process's RNG states (Python, NumPy, torch CPU and CUDA) and partial
epoch metrics; the best value so far and the log history; the settings, the task and a
description of the model (so it can be rebuilt without the training script).
"""
from . import checkpoint as ckpt

_WHERE = "ndops.models.training"
# Settings that fix the data order within an epoch: a mid-epoch resume needs the same ones.
_ORDER_SETTINGS = ("batch_size", "seed", "shuffle", "drop_last")


def _class_name(obj):
    return None if obj is None else type(obj).__name__


def training_state(trainer):
    """The checkpoint dict of ``trainer`` (complete on rank 0; every process must call it,
    since it gathers their RNG states)."""
    ranks = trainer.distributed.gather_objects({"rng": ckpt.capture_rng_state(),
                                                "epoch_totals": trainer.epoch_totals})
    if not trainer.distributed.is_main:
        return None
    from ndops import __version__
    optional = {name: None if obj is None else obj.state_dict()
                for name, obj in (("scheduler", trainer.scheduler), ("scaler", trainer.scaler),
                                  ("ema", trainer.ema))}
    return {"format": ckpt.FORMAT, "format_version": ckpt.FORMAT_VERSION,
            "ndops_version": __version__,
            "model": trainer.model.state_dict(),
            "optimizer": trainer.optimizer.state_dict(),
            "optimizer_class": _class_name(trainer.optimizer),
            "scheduler_class": _class_name(trainer.scheduler),
            **optional,
            "epoch": trainer.epoch, "step": trainer.step, "step_in_epoch": trainer.step_in_epoch,
            "world_size": trainer.distributed.world_size, "ranks": ranks,
            "best": trainer.best, "history": trainer.history,
            "step_history": trainer.step_history,
            "config": trainer.config.to_dict(), "monitor": trainer.monitor,
            "task": trainer.task.describe(), "task_state": trainer.task.state_dict(),
            "model_spec": ckpt.describe_model(trainer.model)}


def check_resumable(state, trainer):
    """Raises ValueError when ``state`` cannot continue exactly under ``trainer``'s setup."""
    if state["step_in_epoch"] == 0:
        return
    saved = state["config"]
    world = trainer.distributed.world_size
    problems = [f"{name} {saved.get(name)!r} -> {getattr(trainer.config, name)!r}"
                for name in _ORDER_SETTINGS if saved.get(name) != getattr(trainer.config, name)]
    if state["world_size"] != world:
        problems.append(f"processes {state['world_size']} -> {world}")
    if problems:
        raise ValueError(f"{_WHERE}: the checkpoint was written mid-epoch (step "
                         f"{state['step_in_epoch']} of epoch {state['epoch'] + 1}) and cannot "
                         f"resume exactly with different {'; '.join(problems)}; keep those "
                         "settings or resume from an end-of-epoch checkpoint")


def _load(what, load, value):
    try:
        load(value)
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{_WHERE}: cannot load the checkpoint's {what} into this trainer "
                         f"({type(err).__name__}: {str(err)[:400]})") from err


def load_training_state(trainer, state):
    """Puts a checkpoint back into ``trainer`` (weights, optimizer, ..., counters, logs) and
    restores this process's RNG state; files are not touched."""
    _load("model weights", trainer.model.load_state_dict, state["model"])
    for name, obj in (("optimizer", trainer.optimizer), ("scheduler", trainer.scheduler)):
        saved = state.get(f"{name}_class")
        if obj is not None and saved is not None and saved != _class_name(obj):
            raise ValueError(f"{_WHERE}: the checkpoint's {name} is {saved}, the trainer's is "
                             f"{_class_name(obj)}; resume with the same {name}")
    _load("optimizer state", trainer.optimizer.load_state_dict, state["optimizer"])
    for name, obj in (("scheduler", trainer.scheduler), ("scaler", trainer.scaler)):
        if obj is not None and state.get(name) is not None:
            _load(f"{name} state", obj.load_state_dict, state[name])
    if trainer.ema is not None:
        if state.get("ema") is not None:
            _load("EMA weights", trainer.ema.load_state_dict, state["ema"])
        else:
            trainer.ema.module.load_state_dict(trainer.model.state_dict())
    trainer.epoch, trainer.step = state["epoch"], state["step"]
    trainer.step_in_epoch = state["step_in_epoch"]
    trainer.best, trainer.history = state["best"], list(state["history"])
    trainer.step_history = list(state["step_history"])
    trainer.task.load_state_dict(state.get("task_state") or {})
    rank = trainer.distributed.rank
    ranks = state["ranks"]
    trainer.epoch_totals = ranks[rank]["epoch_totals"] if rank < len(ranks) else {}
    if rank < len(ranks):
        ckpt.restore_rng_state(ranks[rank]["rng"])
    else:
        ckpt.seed_everything(trainer.config.seed + rank + trainer.step)
