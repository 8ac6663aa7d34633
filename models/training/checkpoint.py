"""Checkpoint files: atomic writes, safe reads with clear errors, RNG state, model specs.

A checkpoint is a dict of tensors and plain Python values (no pickled classes), so it loads
with ``torch.load(..., weights_only=True)``. It is written to a temporary file in the same
folder, flushed to disk, then renamed over the target with ``os.replace`` (atomic on POSIX and
Windows): a crash or a full disk during a save leaves the previous file intact and no partial
file behind.
"""
import importlib
import json
import os
import random
import shutil

import numpy as np
import torch

from ..config import atomic_write  # noqa: F401  (re-exported: logs, images use it from here)

FORMAT = "ndops.models.training.checkpoint"
FORMAT_VERSION = 1
_WHERE = "ndops.models.training"


def save_checkpoint(state, path):
    """Writes the checkpoint dict ``state`` to ``path`` atomically."""
    atomic_write(path, lambda f: torch.save(state, f))


def copy_atomic(source, target):
    """Copies ``source`` to ``target`` atomically (e.g. ``last.pt`` to ``best.pt``)."""
    def write(f):
        with open(source, "rb") as src:
            shutil.copyfileobj(src, f)
    atomic_write(target, write)


def load_checkpoint(path, map_location="cpu"):
    """Reads a checkpoint written by the trainer. Raises FileNotFoundError when it does not
    exist, RuntimeError when it cannot be read (truncated, corrupted, not a torch file) and
    ValueError when it is a torch file but not a trainer checkpoint."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{_WHERE}: checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises several types for damaged files
        raise RuntimeError(f"{_WHERE}: cannot read checkpoint {path}: the file is truncated, "
                           f"corrupted or not a torch checkpoint ({type(err).__name__}: "
                           f"{str(err)[:200]})") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{_WHERE}: {path} is a torch file but not a checkpoint written by "
                         "ndops.models.training.Trainer (no 'format' entry); to start from "
                         "plain weights, load them with model.load_state_dict before fit()")
    if state.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(f"{_WHERE}: {path} has checkpoint format version "
                         f"{state['format_version']}, newer than this ndops reads "
                         f"({FORMAT_VERSION}); upgrade ndops")
    return state


# ----- random number generator state -----
def capture_rng_state():
    """The state of Python's ``random``, NumPy's global generator, torch's CPU generator and
    every CUDA device's generator, as tensors and plain values."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": {"version": version, "internal": list(internal), "gauss": gauss},
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)),
                       "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
             "torch": torch.get_rng_state(),
             "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    return state


def restore_rng_state(state):
    """Restores a :func:`capture_rng_state` result (CUDA states only for devices that exist)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        count = min(len(state["cuda"]), torch.cuda.device_count())
        torch.cuda.set_rng_state_all(state["cuda"][:count])


def seed_everything(seed):
    """Seeds Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


class preserved_rng:
    """Context manager: restores every global RNG (Python, NumPy, torch CPU/CUDA) on exit, so
    the code inside does not shift the random stream of the code around it."""

    def __enter__(self):
        self._state = capture_rng_state()
        return self

    def __exit__(self, *exc):
        restore_rng_state(self._state)
        return False


# ----- rebuilding a model without the training script -----
def describe_model(model):
    """A JSON-serializable record that :func:`build_model` turns back into ``model``'s
    architecture, or None when the model cannot be rebuilt from its constructor arguments.
    Handles ``ndops.models`` models (any ``ConfigurableModel``) and a
    ``GaussianDiffusion`` around one."""
    from ndops.models.config import ConfigurableModel
    from ndops.models.diffusion import GaussianDiffusion
    if isinstance(model, GaussianDiffusion):
        inner = describe_model(model.model)
        return None if inner is None else {"kind": "diffusion", "diffusion": model.config,
                                           "model": inner}
    if isinstance(model, ConfigurableModel):
        spec = {"kind": "model", "module": type(model).__module__,
                "qualname": type(model).__qualname__, "config": model.config}
        try:
            json.dumps(spec)
        except (TypeError, ValueError):  # e.g. a module passed as a constructor argument
            return None
        return spec
    return None


def build_model(spec):
    """The (freshly initialized) model a :func:`describe_model` record describes."""
    if not isinstance(spec, dict) or spec.get("kind") not in ("model", "diffusion"):
        raise ValueError(f"{_WHERE}: this checkpoint does not describe its model (it was "
                         "trained with a model that is not an ndops.models ConfigurableModel); "
                         "build the model yourself and load the checkpoint's 'model' weights")
    if spec["kind"] == "diffusion":
        from ndops.models.diffusion import GaussianDiffusion
        return GaussianDiffusion(build_model(spec["model"]), **spec["diffusion"])
    try:
        owner = importlib.import_module(spec["module"])
        cls = owner
        for part in spec["qualname"].split("."):
            cls = getattr(cls, part)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{_WHERE}: cannot find the model class {spec['qualname']!r} of module "
                         f"{spec['module']!r} recorded in the checkpoint ({err}); import or "
                         "install the code that defines it") from err
    return cls(**spec["config"])


def load_model(checkpoint, use_ema=True, map_location="cpu"):
    """The model of a trainer checkpoint (a path, or the dict :func:`load_checkpoint`
    returned), rebuilt from its recorded description (any ``ndops.models`` model, or a
    ``GaussianDiffusion`` around one) with the EMA weights when saved and ``use_ema``, else
    the trained weights; in eval mode on ``map_location``."""
    state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint,
                                                                            map_location)
    model = build_model(state.get("model_spec"))
    weights = state["ema"]["module"] if use_ema and state.get("ema") else state["model"]
    model.load_state_dict(weights)
    return model.to(map_location).eval()
