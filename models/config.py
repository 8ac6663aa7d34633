"""Config round-trip for ndops models: constructor arguments captured automatically, saved as
JSON next to the weights, and rebuilt without the training script.

Subclass :class:`ConfigurableModel` instead of ``nn.Module``; nothing else changes::

    class TinyNet(ConfigurableModel):
        def __init__(self, spatial_dims, channels=(8, 16)):
            super().__init__()
            ...

    net = TinyNet(3, channels=(4, 8))
    net.config            # {"spatial_dims": 3, "channels": [4, 8]}
    net.save("run/ckpt")  # run/ckpt/config.json + run/ckpt/model.pt
    net2 = TinyNet.load("run/ckpt")                # or ConfigurableModel.load("run/ckpt")

Rules of the captured config:
- Every argument of the most-derived ``__init__`` is recorded, defaults included, so a model
  saved today rebuilds identically even if a default changes later. ``**kwargs`` are stored
  flat; ``*args`` are not supported (a subclass declaring them raises TypeError at class
  creation) because a config must rebuild the model from keywords alone.
- Tuples become lists (JSON has no tuples): constructors must accept lists wherever they accept
  tuples. Enum members are stored by their ``.value``, so constructors must accept the value too.
- Values JSON cannot hold (a module, a tensor, a function) are kept in ``.config`` as they are;
  ``save`` then raises a TypeError naming the argument, before any file is written.
"""
import enum
import functools
import importlib
import inspect
import json
import os
import tempfile

import torch
from torch import nn

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.pt"


def _to_config_value(value):
    """Tuples -> lists and Enum members -> values, recursively; other values are kept as they
    are (copying lists and dicts so the model's config cannot be changed from outside)."""
    if isinstance(value, enum.Enum):
        return _to_config_value(value.value)
    if isinstance(value, (list, tuple)):
        return [_to_config_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_config_value(v) for k, v in value.items()}
    return value


def _find_unserializable(value, path):
    """The path (e.g. ``"attention[1]"``) and type of the first value JSON cannot hold, else
    None."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return None
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _find_unserializable(v, f"{path}[{i}]")
            if found:
                return found
        return None
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"{path} (key {k!r})", type(k).__name__
            found = _find_unserializable(v, f"{path}[{k!r}]")
            if found:
                return found
        return None
    return path, type(value).__name__


def atomic_write(path, write):
    """Calls ``write(file)`` on a temporary binary file next to ``path`` (creating the folder),
    then renames it onto ``path`` with os.replace: readers never see a half-written file, and
    on any error the temporary file is removed and ``path`` is untouched. (Also used for the
    trainer's checkpoints.)"""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class ConfigurableModel(nn.Module):
    """Base class of ndops models: captures the subclass's ``__init__`` arguments into
    ``.config`` and provides ``save(dir)`` / ``load(dir)``.

    ``save(directory)`` creates the folder if needed and writes ``config.json`` (class name,
    module, ndops version, config) and ``model.pt`` (the state_dict), each atomically (temporary
    file + os.replace); other files in the folder are left alone. ``load(directory,
    map_location="cpu")`` rebuilds the model from ``config.json`` and loads the weights
    (strictly). Called on a subclass (``UNet.load``) it checks the saved class is that class
    or a subclass of it; called on ``ConfigurableModel`` it finds the saved class in the
    registry of subclasses (importing its module if needed).

    The loaded model is in training mode, like a freshly constructed one; call ``.eval()`` for
    inference.
    """

    # "module:qualname" -> class, filled by __init_subclass__.
    _registry = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        ConfigurableModel._registry[f"{cls.__module__}:{cls.__qualname__}"] = cls
        if "__init__" not in cls.__dict__:
            return
        init = cls.__dict__["__init__"]
        signature = inspect.signature(init)
        if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()):
            raise TypeError(f"ndops.models.ConfigurableModel: {cls.__name__}.__init__ takes "
                            "*args; a config must rebuild the model from keyword arguments, so "
                            "declare every argument by name")

        @functools.wraps(init)
        def wrapped_init(self, *args, **kw):
            # Only the outermost __init__ (the most-derived class's) records the config; the
            # super().__init__ calls it makes run with the flag set and record nothing.
            if self.__dict__.get("_ndops_capturing", False):
                init(self, *args, **kw)
                return
            bound = signature.bind(self, *args, **kw)
            bound.apply_defaults()
            config = {}
            for name, value in list(bound.arguments.items())[1:]:
                if signature.parameters[name].kind is inspect.Parameter.VAR_KEYWORD:
                    config.update(value)
                else:
                    config[name] = value
            object.__setattr__(self, "_ndops_capturing", True)
            try:
                init(self, *args, **kw)
            finally:
                object.__setattr__(self, "_ndops_capturing", False)
            object.__setattr__(self, "_ndops_config", _to_config_value(config))

        cls.__init__ = wrapped_init

    @property
    def config(self):
        """The constructor arguments as a dict (tuples as lists); ``type(model)(**config)``
        rebuilds the model."""
        config = self.__dict__.get("_ndops_config")
        if config is None:
            raise RuntimeError(f"ndops.models.ConfigurableModel: {type(self).__name__} has no "
                               "captured config (was __init__ bypassed?)")
        return _to_config_value(config)

    @classmethod
    def from_config(cls, config):
        """Builds the model from a config dict (``model.config`` or the one in config.json)."""
        if cls is ConfigurableModel:
            raise TypeError("ndops.models.ConfigurableModel.from_config: call it on the model "
                            "class (e.g. UNet.from_config(cfg)); the base class cannot tell "
                            "which model a bare config describes")
        return cls(**config)

    def save(self, directory):
        """Writes ``config.json`` and ``model.pt`` into ``directory`` (created if needed)."""
        from ndops import __version__
        config = self.config
        bad = _find_unserializable(config, "config")
        if bad is not None:
            where, type_name = bad
            raise TypeError(f"ndops.models.{type(self).__name__}.save: {where} is a "
                            f"{type_name}, which JSON cannot store; pass plain values (numbers, "
                            "strings, lists, dicts, specs like ('group', {'num_groups': 8})) to "
                            "the constructor to make the model savable")
        record = {"class": type(self).__name__, "module": type(self).__module__,
                  "qualname": type(self).__qualname__, "ndops_version": __version__,
                  "config": config}
        text = json.dumps(record, indent=2, sort_keys=True) + "\n"
        os.makedirs(directory, exist_ok=True)
        state = self.state_dict()
        atomic_write(os.path.join(directory, WEIGHTS_FILE), lambda f: torch.save(state, f))
        atomic_write(os.path.join(directory, CONFIG_FILE), lambda f: f.write(text.encode()))

    @classmethod
    def load(cls, directory, map_location="cpu"):
        """Rebuilds the model saved in ``directory`` and loads its weights (on
        ``map_location``)."""
        config_path = os.path.join(directory, CONFIG_FILE)
        weights_path = os.path.join(directory, WEIGHTS_FILE)
        for path in (config_path, weights_path):
            if not os.path.isfile(path):
                raise FileNotFoundError(f"ndops.models.{cls.__name__}.load: {path} does not "
                                        "exist; expected a folder written by model.save(dir)")
        with open(config_path, encoding="utf-8") as f:
            record = json.load(f)
        if not isinstance(record, dict) or not {"class", "config"} <= record.keys():
            raise ValueError(f"ndops.models.{cls.__name__}.load: {config_path} is not an ndops "
                             "model config (needs 'class' and 'config' entries)")
        model_cls = cls._resolve_class(record)
        if not issubclass(model_cls, cls):
            raise ValueError(f"ndops.models.{cls.__name__}.load: {directory} holds a "
                             f"{model_cls.__name__}, not a {cls.__name__}; use "
                             f"{model_cls.__name__}.load or ConfigurableModel.load")
        model = model_cls.from_config(record["config"])
        state = torch.load(weights_path, map_location=map_location, weights_only=True)
        model.load_state_dict(state)
        if map_location is not None and not callable(map_location) \
                and not isinstance(map_location, dict):
            model.to(map_location)
        return model

    @classmethod
    def _resolve_class(cls, record):
        """The registered class a config.json record names (importing its module first when
        the class is not registered yet)."""
        name, module = record["class"], record.get("module")
        key = f"{module}:{record.get('qualname', name)}"
        registry = ConfigurableModel._registry
        if key not in registry and module:
            try:
                importlib.import_module(module)
            except ImportError:
                pass
        if key in registry:
            return registry[key]
        by_name = [c for c in registry.values() if c.__name__ == name]
        if len(by_name) == 1:
            return by_name[0]
        if not by_name:
            raise ValueError(f"ndops.models.{cls.__name__}.load: unknown model class "
                             f"{name!r} (module {module!r}); import the module that defines it "
                             "before loading")
        raise ValueError(f"ndops.models.{cls.__name__}.load: several registered classes are "
                         f"named {name!r} and none is in module {module!r}; call load on the "
                         "class itself")
