"""Python-side registrations for the compiled ops in ``torch.ops.ndops``.

The schemas and CPU/CUDA kernels come from the extension (``csrc/``); this package attaches
what torch expects from Python: autograd formulas (``torch.library.register_autograd``, the
backward of each op being an op of its own) and fake kernels (``torch.library.register_fake``,
output shapes from symbolic sizes, used by torch.compile and opcheck). One module per op family,
each with a ``register()``; nothing is registered when the extension is not built. A family
whose ops the built extension lacks (a build older than the Python sources) is skipped with a
warning, so ndops still imports and those ops run on the other backends.
"""
import importlib
import pkgutil
import warnings

from .._ext import has_extension

FAMILIES = sorted(m.name for m in pkgutil.iter_modules(__path__))


def _register_all():
    for family in FAMILIES:
        try:
            importlib.import_module(f"{__name__}.{family}").register()
        except RuntimeError as error:
            if "does not exist" not in str(error):
                raise
            warnings.warn(f"ndops: the compiled extension has no {family} ops ({error}); it was "
                          "built from older sources: rebuild it with "
                          "`pip install --no-build-isolation -e .`", RuntimeWarning, stacklevel=2)


if has_extension():
    _register_all()
