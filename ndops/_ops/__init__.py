"""Python-side registrations for the compiled ops in ``torch.ops.ndops``.

The schemas and CPU/CUDA kernels come from the extension (``csrc/``); this package attaches
what torch expects from Python: autograd formulas (``torch.library.register_autograd``, the
backward of each op being an op of its own) and fake kernels (``torch.library.register_fake``,
output shapes from symbolic sizes, used by torch.compile and opcheck). One module per op family,
each with a ``register()``; nothing is registered when the extension is not built.
"""
import importlib
import pkgutil

from .._ext import has_extension

FAMILIES = sorted(m.name for m in pkgutil.iter_modules(__path__))

if has_extension():
    for _family in FAMILIES:
        importlib.import_module(f"{__name__}.{_family}").register()
