"""Building a training run from a config file (what ``ndops-train`` reads).

A config (YAML or JSON) has these sections; only ``data``, ``model`` and ``task`` are
required::

    data:       {factory: "../digits_classify.py:load_data", args: {...}}
                # or {npz: "data.npz", inputs: "x", targets: "y", val_fraction: 0.2,
                #     test_fraction: 0.0, seed: 0}
    model:      {class: "UNet", args: {...}}   # an ndops.models class name, or
                                               # "package.module:Name" / "file.py:Name" of
                                               # a model class or a function returning one
    task:       {name: "classification" | "segmentation" | "regression" | "diffusion",
                 args: {...}}
    diffusion:  {timesteps: 200, schedule: "cosine", ...}   # GaussianDiffusion args (diffusion)
    optimizer:  {name: "AdamW", lr: 0.001, ...}   # any torch.optim class, with its kwargs
    scheduler:  {name: "cosine"}                  # "cosine", "onecycle", or any
                                                  # torch.optim.lr_scheduler class + kwargs
    trainer:    {epochs: 10, batch_size: 32, ...} # TrainerConfig settings

Paths of factory files and npz files are relative to the config file's folder;
``trainer.root`` (where run folders go, default ``runs``) to the working directory. A
factory returns ``{"train": ..., "val": ..., "test": ...}`` (val/test optional) or a tuple
``(train, val[, test])`` of anything ``Trainer.fit`` accepts.
"""
import importlib
import importlib.util
import json
import math
import os

import numpy as np
import torch

from .diffusion import DiffusionTask
from .settings import TrainerConfig
from .tasks import ClassificationTask, RegressionTask, SegmentationTask

_WHERE = "ndops-train"
SECTIONS = ("data", "model", "task", "diffusion", "optimizer", "scheduler", "trainer")
TASKS = {"classification": ClassificationTask, "segmentation": SegmentationTask,
         "regression": RegressionTask, "diffusion": DiffusionTask}
MODEL_MODULES = ("ndops.models.unet", "ndops.models.resnet", "ndops.models.seed_compat")


def load_config(path):
    """The config dict of a .yaml/.yml (needs PyYAML) or .json file, with ``_dir`` set to the
    file's folder (the base of relative paths)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{_WHERE}: config file {path} does not exist")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith((".yaml", ".yml")):
        try:
            import yaml
        except ImportError:
            raise ImportError(f"{_WHERE}: {path} is YAML but PyYAML is not installed; "
                              "pip install PyYAML, or write the config as JSON") from None
        config = yaml.safe_load(text)
    else:
        config = json.loads(text)
    if not isinstance(config, dict):
        raise ValueError(f"{_WHERE}: {path} must hold a mapping of sections {SECTIONS}")
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise ValueError(f"{_WHERE}: unknown config section(s) {unknown} in {path}; valid "
                         f"sections: {', '.join(SECTIONS)}")
    config["_dir"] = os.path.dirname(os.path.abspath(path))
    return config


def parse_value(text):
    """A ``--set`` value: YAML/JSON syntax when it parses (numbers, true, null, [..], {..}),
    else the plain string."""
    try:
        import yaml
        return yaml.safe_load(text)
    except ImportError:
        try:
            return json.loads(text)
        except ValueError:
            return text


def apply_overrides(config, assignments):
    """Applies ``section.key=value`` (dots go deeper) assignments to ``config`` in place."""
    for item in assignments or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{_WHERE}: --set expects KEY=VALUE (e.g. trainer.epochs=3), got "
                             f"{item!r}")
        parts = key.split(".")
        if parts[0] not in SECTIONS:
            raise ValueError(f"{_WHERE}: --set {item!r}: unknown section {parts[0]!r}; valid "
                             f"sections: {', '.join(SECTIONS)}")
        node = config
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = parse_value(value)


def _section(config, name, required=True):
    value = config.get(name)
    if value is None and required:
        raise ValueError(f"{_WHERE}: the config has no {name!r} section")
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"{_WHERE}: the config's {name!r} section must be a mapping, got "
                         f"{type(value).__name__}")
    return dict(value or {})


def resolve_object(ref, base_dir, default_modules=()):
    """``"file.py:name"`` (relative to ``base_dir``), ``"package.module:name"``, or a bare
    name looked up in ``default_modules``."""
    if ":" in ref:
        source, _, name = ref.rpartition(":")
        if source.endswith(".py"):
            path = os.path.normpath(os.path.join(base_dir, source))
            if not os.path.isfile(path):
                raise FileNotFoundError(f"{_WHERE}: {path} (from {ref!r}) does not exist")
            module_name = "ndops_train_" + os.path.splitext(os.path.basename(path))[0]
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(source)
        if not hasattr(module, name):
            raise ValueError(f"{_WHERE}: {source} has no {name!r}")
        return getattr(module, name)
    for module_name in default_modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        if hasattr(module, ref):
            return getattr(module, ref)
    raise ValueError(f"{_WHERE}: unknown name {ref!r}; give an ndops.models class "
                     "(UNet, ResNet, ResNetDenoiser, ...), 'package.module:Name' or "
                     "'file.py:Name'")


def build_data(config):
    """{"train": ..., "val": ... or None, "test": ... or None} from the data section."""
    data = _section(config, "data")
    base = config["_dir"]
    if "factory" in data:
        result = resolve_object(data["factory"], base)(**data.get("args", {}))
        if isinstance(result, (tuple, list)):
            result = dict(zip(("train", "val", "test"), result))
        if not isinstance(result, dict) or result.get("train") is None:
            raise ValueError(f"{_WHERE}: the data factory {data['factory']} must return "
                             "{'train': ..., 'val': ..., 'test': ...} or (train, val[, test])")
        return {split: result.get(split) for split in ("train", "val", "test")}
    if "npz" in data:
        return _npz_splits(os.path.join(base, data["npz"]), data)
    raise ValueError(f"{_WHERE}: the data section needs 'factory' (\"file.py:function\") or "
                     "'npz' (a path)")


def _npz_splits(path, data):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{_WHERE}: data file {path} does not exist")
    arrays = np.load(path)
    for key in (data.get("inputs", "x"), data.get("targets")):
        if key is not None and key not in arrays:
            raise ValueError(f"{_WHERE}: {path} has no array {key!r}; it has "
                             f"{sorted(arrays.files)}")
    tensors = [torch.as_tensor(arrays[data.get("inputs", "x")], dtype=torch.float32)]
    if data.get("targets") is not None:
        target = arrays[data["targets"]]
        dtype = torch.long if np.issubdtype(target.dtype, np.integer) else torch.float32
        tensors.append(torch.as_tensor(target, dtype=dtype))
    count = tensors[0].shape[0]
    order = torch.randperm(count, generator=torch.Generator().manual_seed(data.get("seed", 0)))
    n_val = int(round(count * data.get("val_fraction", 0.2)))
    n_test = int(round(count * data.get("test_fraction", 0.0)))
    bounds = {"val": order[:n_val], "test": order[n_val:n_val + n_test],
              "train": order[n_val + n_test:]}
    return {split: (tuple(t[idx] for t in tensors) if len(idx) else None)
            for split, idx in bounds.items()}


def build_model(config):
    """The model (wrapped in ``GaussianDiffusion`` for the diffusion task) and the task."""
    model_section = _section(config, "model")
    task_section = _section(config, "task")
    if "class" not in model_section:
        raise ValueError(f"{_WHERE}: the model section needs 'class'")
    cls = resolve_object(model_section["class"], config["_dir"], MODEL_MODULES)
    model = cls(**model_section.get("args", {}))
    name = task_section.get("name")
    if name not in TASKS:
        raise ValueError(f"{_WHERE}: task name must be one of {sorted(TASKS)}, got {name!r}")
    task = TASKS[name](**task_section.get("args", {}))
    if name == "diffusion":
        from ndops.models.diffusion import GaussianDiffusion
        model = GaussianDiffusion(model, **_section(config, "diffusion", required=False))
    return model, task


def trainer_config(config):
    """The TrainerConfig of the trainer section."""
    return TrainerConfig.build(_section(config, "trainer", required=False))


def build_optimizer(config, model, settings, train_size):
    """(optimizer, scheduler) from the optimizer/scheduler sections; ``"cosine"`` anneals
    over the whole run and ``"onecycle"`` is OneCycleLR over all steps (both set
    ``settings.scheduler_interval`` to match)."""
    spec = _section(config, "optimizer", required=False)
    name = spec.pop("name", "AdamW")
    spec.setdefault("lr", settings.lr)
    optimizer_cls = getattr(torch.optim, name, None)
    if not (isinstance(optimizer_cls, type) and issubclass(optimizer_cls, torch.optim.Optimizer)):
        raise ValueError(f"{_WHERE}: unknown optimizer {name!r} (a torch.optim class name, "
                         "e.g. AdamW, SGD)")
    optimizer = optimizer_cls([p for p in model.parameters() if p.requires_grad], **spec)
    spec = _section(config, "scheduler", required=False)
    name = spec.pop("name", None)
    if name in (None, "none"):
        return optimizer, None
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rounding = math.floor if settings.drop_last else math.ceil
    per_epoch = rounding(math.ceil(train_size / world) / settings.batch_size)
    if name == "cosine":
        steps = settings.epochs * (per_epoch if settings.scheduler_interval == "step" else 1)
        return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1),
                                                                     **spec)
    if name == "onecycle":
        settings.scheduler_interval = "step"
        spec.setdefault("max_lr", optimizer.param_groups[0]["lr"])
        return optimizer, torch.optim.lr_scheduler.OneCycleLR(
            optimizer, total_steps=max(settings.epochs * per_epoch, 1), **spec)
    scheduler_cls = getattr(torch.optim.lr_scheduler, name, None)
    if not isinstance(scheduler_cls, type):
        raise ValueError(f"{_WHERE}: unknown scheduler {name!r} ('cosine', 'onecycle' or a "
                         "torch.optim.lr_scheduler class name)")
    return optimizer, scheduler_cls(optimizer, **spec)
