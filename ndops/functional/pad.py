"""``pad_nd``: ``torch.nn.functional.pad`` with every mode at any number of padded dims."""
import numbers

import torch
import torch.nn.functional as F

from .. import _backend
from ..fallback import pad as fallback_pad

_OP = "pad_nd"
MODES = ("constant", "reflect", "replicate", "circular")


def pad_nd(input, pad, mode="constant", value=None, *, spatial_dims=None):
    """Pad (or, with negative pads, crop) the trailing ``len(pad) // 2`` dims of ``input``.

    Exactly ``torch.nn.functional.pad``: ``pad`` lists (left, right) pairs starting from the
    LAST dim, ``(left_last, right_last, left_second_last, right_second_last, ...)``, so
    N = ``len(pad) // 2`` dims are padded (``spatial_dims``, if given, must agree). ``mode``
    is ``"constant"`` (fill with ``value``, default 0; any input rank >= N), ``"reflect"``
    (mirror without repeating the edge; each pad < its dim's size), ``"replicate"`` (repeat
    the edge) or ``"circular"`` (wrap around at most once; as in torch, negative pads crop
    before the positive ones wrap). The non-constant modes take a (B, C, *spatial) or
    (C, *spatial) input, i.e. rank N + 2 or N + 1, as in torch (see ``ndops._args``).

    Differences from torch: reflect/replicate/circular work for any N (torch: N <= 3);
    reflect/replicate also accept bool tensors, zero channels and (at N = 1) an empty output,
    and give a zero gradient for an empty output (torch's 3-D reflect returns uninitialized
    memory); errors are ValueErrors (torch raises RuntimeError / NotImplementedError /
    TypeError), including circular pads that wrap around a cropped dim more than once, where
    torch fails on aliased memory or returns uninitialized values.
    """
    pad = _check_pad_args(input, pad, mode, value, spatial_dims)
    n = len(pad) // 2
    fill = 0.0 if value is None else float(value)
    native_ok = mode in ("constant", "circular") or _torch_can_pad(input, pad)
    impl = _backend.choose(_OP, n, input.device, native_ok=native_ok)
    if impl == "native":
        return F.pad(input, pad, mode, value)
    if impl == "ext":
        return torch.ops.ndops.pad_nd(input, pad, mode, fill)
    return fallback_pad.pad_nd(input, pad, mode, fill)


def _torch_can_pad(input, pad):
    """False where torch's own reflect/replicate kernels fail on a valid call: bool input, an
    empty channel dim, an empty output (an error at N = 1, an uninitialized gradient from 3-D
    reflect)."""
    n = len(pad) // 2
    out_sizes = [input.shape[-1 - i] + pad[2 * i] + pad[2 * i + 1] for i in range(n)]
    return input.dtype != torch.bool and input.shape[-n - 1] != 0 and 0 not in out_sizes


def _is_int(v):
    return isinstance(v, (numbers.Integral, torch.SymInt)) and not isinstance(v, bool)


def _check_pad_args(input, pad, mode, value, spatial_dims):
    """Validate every argument as torch does (extended to any N); return ``pad`` as a list."""
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"ndops.{_OP}: input must be a torch.Tensor, got {type(input).__name__}")
    if not isinstance(mode, str) or mode not in MODES:
        raise ValueError(f"ndops.{_OP}: mode must be one of {MODES}, got {mode!r}")
    if not isinstance(pad, (tuple, list, torch.Size)) or not all(_is_int(p) for p in pad):
        raise ValueError(f"ndops.{_OP}: pad must be a tuple of ints (left_last, right_last, "
                         f"left_second_last, ...), got {pad!r}")
    pad = list(pad)
    if len(pad) % 2:
        raise ValueError(f"ndops.{_OP}: pad must have an even length, one (left, right) pair "
                         f"per padded dim, last dim first; got length {len(pad)}")
    n = len(pad) // 2
    if n > input.dim():
        raise ValueError(f"ndops.{_OP}: pad has {n} (left, right) pairs but input has only "
                         f"{input.dim()} dims (shape {tuple(input.shape)})")
    if value is not None and not isinstance(value, numbers.Real):
        raise ValueError(f"ndops.{_OP}: value must be a real number or None, got {value!r}")
    if mode != "constant" and value is not None and value != 0:
        raise ValueError(f"ndops.{_OP}: value is only used by mode='constant'; got "
                         f"value={value!r} with mode={mode!r}")
    if spatial_dims is not None and (not _is_int(spatial_dims) or spatial_dims != n):
        raise ValueError(f"ndops.{_OP}: spatial_dims={spatial_dims!r} conflicts with pad, which "
                         f"has {n} (left, right) pairs (N = len(pad) // 2)")
    if mode != "constant" and (n == 0 or input.dim() not in (n + 1, n + 2)):
        raise ValueError(
            f"ndops.{_OP}: mode={mode!r} pads the last N = len(pad) // 2 dims of a "
            f"(B, C, *spatial) or (C, *spatial) input, so with len(pad) = {len(pad)} the input "
            f"must have rank {n + 2} or {n + 1} (and N >= 1); got shape {tuple(input.shape)}")
    for i in range(n):
        dim = input.dim() - 1 - i
        _check_dim(mode, dim, input.shape[dim], pad[2 * i], pad[2 * i + 1])
    return pad


def _check_dim(mode, dim, size, left, right):
    """The rules of one padded dim (torch's, plus the circular wrap torch does not catch)."""
    out = size + left + right
    cropped = size + min(left, 0) + min(right, 0)
    where = f"pad ({left}, {right}) for dim {dim} of size {size}"
    if mode == "constant":
        if cropped < 0:
            raise ValueError(f"ndops.{_OP}: negative pad crops more than the whole dim: {where}")
    elif mode == "reflect":
        if left >= size or right >= size:
            raise ValueError(f"ndops.{_OP}: mode='reflect' needs each pad < the size of its "
                             f"dim; got {where}")
    elif mode == "replicate":
        if size == 0:
            raise ValueError(f"ndops.{_OP}: mode='replicate' cannot pad an empty dim; got {where}")
    elif left > size or right > size or (out > 0 and max(left, right) > cropped):
        raise ValueError(f"ndops.{_OP}: mode='circular' needs each pad <= the size of its dim "
                         f"after cropping by the negative pad (wrapping around at most once); "
                         f"got {where}")
    if out < 0:
        raise ValueError(f"ndops.{_OP}: negative pad leaves the output with {out} elements "
                         f"along dim {dim}; got {where}")
