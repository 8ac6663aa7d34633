"""Pooling for any number of spatial dims: max, average, adaptive, and max unpooling.

Each op mirrors its ``torch.nn.functional`` counterpart (1d/2d/3d) argument for argument,
with the same output sizes, rounding, divisor rules, tie-breaking and NaN handling, and adds a
keyword-only ``spatial_dims``. How N is found from the arguments: ``ndops._args``.

Where ndops differs from torch (all on purpose, the same for every backend):
- the dtype rules are one rule for every N: max pooling takes floating-point and integer
  tensors, the other ops floating-point only (torch's CPU kernels also take int64 in
  avg_pool1d/2d and reject float16/bfloat16 in avg_pool3d);
- avg pooling at N = 3 accepts inputs smaller than the kernel when the padded input fits it
  (torch's avg_pool3d alone rejects them);
- max pooling rejects a dilation/padding that leaves some window with no input element (torch
  returns -inf there with an out-of-range index, and its backward writes outside the input);
- inputs with zero channels or a zero spatial size are rejected by every op (only the batch
  may be empty);
- max_unpool_nd checks that every index fits the output (torch skips that check when the
  output is empty).

The compiled ops take the normalized arguments, in this order: batched input (and indices),
per-dim lists, flags; ``max_pool_nd`` and ``adaptive_max_pool_nd`` return (values, indices).
"""
import math

import torch
import torch.nn.functional as F

from .. import _args, _backend
from ..fallback import adaptive_pool as _fallback_adaptive
from ..fallback import pool as _fallback

# The compiled CPU kernels come first at N <= 3 too, from 2^17 input elements: against torch's
# own (2 threads, fp32, 2026-11-22, BENCHMARKS.md) max/avg pooling 1.8-10x forward and 1.4-6.5x
# forward + backward (B8 C64 112^2 k3 s2 p1, B2 C16 32^3, B4 C32 64^2 ceil_mode, B2 C32 64^3,
# B8 C32 65536), adaptive pools 2-5.7x (B2 C32 32^3 -> 5); torch wins below ~65K elements
# (0.4-0.7x on B1 C3 8^2, B8 C64 7^2 -> 1, B16 C64 64 k3 s1) and ties around 64K.
_POOL_MIN_NUMEL = 2 ** 17
for _op in ("max_pool_nd", "avg_pool_nd", "adaptive_avg_pool_nd", "adaptive_max_pool_nd"):
    _backend.set_preference(_op, _backend.compiled_first_on_cpu(_POOL_MIN_NUMEL))

_REDUCED_PRECISION = (torch.float16, torch.bfloat16)


# ---- argument checks shared by the pooling ops ------------------------------------------------

def _check_dtype(op, input, allow_integer=False):
    """Real floating point (and, for max pooling, integer) tensors, like torch's pool kernels."""
    ok = input.is_floating_point() or (
        allow_integer and not input.is_complex() and input.dtype != torch.bool)
    if not ok:
        kinds = "a floating-point or integer" if allow_integer else "a floating-point"
        raise RuntimeError(f"ndops.{op}: input must be {kinds} tensor, got dtype {input.dtype}")


def _check_not_empty(op, input, batched):
    """Only the batch dim may be empty (torch's pool kernels reject every other empty dim)."""
    sizes = input.shape[1:] if batched else input.shape
    if any(s == 0 for s in sizes):
        raise ValueError(f"ndops.{op}: input must have non-zero channel and spatial sizes "
                         f"(only the batch may be empty), got shape {tuple(input.shape)}")


def _window_args(op, input, kernel_size, stride, padding, dilation, spatial_dims):
    """N, batched and the per-dim tuples (k, s, p, d) of a sliding-window pool, validated."""
    if isinstance(stride, (tuple, list)) and len(stride) == 0:
        stride = None  # torch reads an empty stride as "default" too
    n, batched = _args.spatial_rank(op, input, spatial_dims=spatial_dims, per_dim={
        "kernel_size": kernel_size, "stride": stride, "padding": padding, "dilation": dilation})
    k, s, p, d = _args.window_args(op, n, kernel_size, stride, padding, dilation)
    return n, batched, k, s, p, d


def _check_half_kernel_padding(op, p, k):
    # torch's rule for both max and avg pooling (the effective-kernel bound it also checks is
    # never the tighter one, since dilation >= 1).
    if any(pi > ki // 2 for pi, ki in zip(p, k)):
        raise ValueError(f"ndops.{op}: padding must be at most half of kernel_size in every "
                         f"dim (padding <= kernel_size // 2), got padding={p}, kernel_size={k}")


def _pooled_size(size, k, s, p, d, ceil_mode):
    """torch's output length of a sliding window over one dim."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1  # the last window would start in the right padding: torch drops it
    return out


def _check_windows_touch_input(op, in_size, k, s, p, d, out_size):
    """Reject windows whose taps all miss the input (possible only with dilation > 1).

    A window starting at or after 0 starts inside the input, so only windows starting in the
    left padding (o * s < p: at most k / 2 of them per dim) need a look.
    """
    for dim, (size, ki, si, pi, di, oi) in enumerate(zip(in_size, k, s, p, d, out_size)):
        for o in range(min(oi, (pi + si - 1) // si)):
            start = o * si - pi
            first_tap = -(start // di)  # the first tap index landing at a position >= 0
            if first_tap >= ki or start + first_tap * di >= size:
                raise ValueError(
                    f"ndops.{op}: with dilation={d} and padding={p}, output position {o} of "
                    f"spatial dim {dim} pools no input element (every tap falls in the "
                    f"padding or between input elements); reduce padding or dilation")


# ---- sliding-window pooling -------------------------------------------------------------------

def max_pool_nd(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
                return_indices=False, *, spatial_dims=None):
    """Max pooling over N spatial dims: ``torch.nn.functional.max_pool{1,2,3}d`` for any N.

    input: (B, C, *spatial) or unbatched (C, *spatial). Returns the pooled (B, C, *out) tensor,
    and with ``return_indices`` also int64 indices flat over the N spatial dims of each (b, c)
    plane (row-major), as torch's. Ties go to the first maximum in row-major window order; a
    NaN wins over numbers (the last NaN of a window). N: see ``ndops._args``. Also takes integer
    dtypes at every N.
    """
    op = "max_pool_nd"
    n, batched, k, s, p, d = _window_args(op, input, kernel_size, stride, padding, dilation,
                                          spatial_dims)
    _check_half_kernel_padding(op, p, k)
    _check_dtype(op, input, allow_integer=True)
    _check_not_empty(op, input, batched)
    in_size = input.shape[-n:]
    out_size = [_pooled_size(*a, ceil_mode) for a in zip(in_size, k, s, p, d)]
    _args.check_output_size(op, out_size, in_size)
    _check_windows_touch_input(op, in_size, k, s, p, d, out_size)
    x = _args.with_batch(input, batched)
    impl = _backend.choose(op, n, input.device, numel=input.numel())
    if impl == "native":
        # torch's max_pool1d has an integer kernel only in its indexed variant
        with_indices = return_indices or (n == 1 and not x.is_floating_point())
        result = getattr(F, f"max_pool{n}d")(x, k, s, p, d, ceil_mode=ceil_mode,
                                             return_indices=with_indices)
        if with_indices and not return_indices:
            result = result[0]
    elif impl == "ext":
        # indices only when returned or when autograd may need them (8 bytes per output)
        wants = return_indices or (x.requires_grad and torch.is_grad_enabled())
        result = torch.ops.ndops.max_pool_nd(x, k, s, p, d, ceil_mode, wants)
        result = result if return_indices else result[0]
    else:
        result = _fallback.max_pool_nd(x, k, s, p, d, ceil_mode, return_indices)
    return _args.drop_batch(result, batched)


def avg_pool_nd(input, kernel_size, stride=None, padding=0, ceil_mode=False,
                count_include_pad=True, divisor_override=None, *, spatial_dims=None):
    """Average pooling over N spatial dims: ``torch.nn.functional.avg_pool{1,2,3}d`` for any N.

    input: (B, C, *spatial) or unbatched (C, *spatial); returns (B, C, *out). Each window's sum
    is divided by ``divisor_override`` when given, else by the number of its elements inside
    the input (``count_include_pad=False``) or inside the input plus padding (``True``; a
    ``ceil_mode`` window reaching past the padding does not count that part). N: see
    ``ndops._args``. ``divisor_override`` also works at N = 1 (torch's avg_pool1d lacks it).
    """
    op = "avg_pool_nd"
    n, batched, k, s, p, _ = _window_args(op, input, kernel_size, stride, padding, 1,
                                          spatial_dims)
    _check_half_kernel_padding(op, p, k)
    if divisor_override is not None and (not _args._is_int(divisor_override)
                                         or divisor_override == 0):
        raise ValueError(f"ndops.{op}: divisor_override must be None or a non-zero int, "
                         f"got {divisor_override!r}")
    _check_dtype(op, input)
    _check_not_empty(op, input, batched)
    in_size = input.shape[-n:]
    out_size = [_pooled_size(size, ki, si, pi, 1, ceil_mode)
                for size, ki, si, pi in zip(in_size, k, s, p)]
    _args.check_output_size(op, out_size, in_size)
    x = _args.with_batch(input, batched)
    native_ok = not (
        (n == 1 and divisor_override is not None)  # avg_pool1d has no divisor_override
        or (n == 3 and any(size < ki for size, ki in zip(in_size, k)))  # avg_pool3d's own rule
        or (n == 3 and x.device.type == "cpu" and x.dtype in _REDUCED_PRECISION))
    impl = _backend.choose(op, n, input.device, native_ok=native_ok, numel=input.numel())
    if impl == "native":
        extra = {} if n == 1 else {"divisor_override": divisor_override}
        result = getattr(F, f"avg_pool{n}d")(x, k, s, p, ceil_mode=ceil_mode,
                                             count_include_pad=count_include_pad, **extra)
    elif impl == "ext":
        result = torch.ops.ndops.avg_pool_nd(x, k, s, p, ceil_mode, count_include_pad,
                                             divisor_override)
    else:
        result = _fallback.avg_pool_nd(x, k, s, p, ceil_mode, count_include_pad,
                                       divisor_override)
    return _args.drop_batch(result, batched)


def max_unpool_nd(input, indices, kernel_size, stride=None, padding=0, output_size=None, *,
                  spatial_dims=None):
    """Partial inverse of ``max_pool_nd``: ``torch.nn.functional.max_unpool{1,2,3}d`` for any N.

    input, indices: (B, C, *pooled) or unbatched (C, *pooled), indices flat over the N spatial
    dims of each plane (as returned by ``max_pool_nd``). Returns zeros of shape (B, C, *out)
    with each input value written at its index. ``output_size`` (N sizes, or N + 2 with the
    batch and channel dims, which are ignored, like torch) picks ``out`` within
    (default - stride, default + stride), default = (in - 1) * stride + kernel - 2 * padding.
    N: see ``ndops._args``.
    """
    op = "max_unpool_nd"
    if isinstance(stride, (tuple, list)) and len(stride) == 0:
        stride = None
    n, batched = _args.spatial_rank(op, input, spatial_dims=spatial_dims, per_dim={
        "kernel_size": kernel_size, "stride": stride, "padding": padding})
    k, s, p, _ = _args.window_args(op, n, kernel_size, stride, padding)
    _check_dtype(op, input)
    if not isinstance(indices, torch.Tensor) or indices.dtype != torch.int64:
        got = indices.dtype if isinstance(indices, torch.Tensor) else type(indices).__name__
        raise RuntimeError(f"ndops.{op}: indices must be an int64 tensor, got {got}")
    _args.check_same_device(op, "input", input, indices=indices)
    if indices.shape != input.shape:
        raise ValueError(f"ndops.{op}: indices must have the shape of input "
                         f"{tuple(input.shape)}, got {tuple(indices.shape)}")
    _check_not_empty(op, input, batched)
    out_size = _unpool_output_size(op, input.shape[-n:], k, s, p, output_size)
    plane = math.prod(out_size)
    if indices.numel() > 0:
        low, high = (int(v) for v in indices.aminmax())
        if low < 0 or high >= plane:
            raise ValueError(f"ndops.{op}: indices must lie in [0, {plane}) for the output "
                             f"size {tuple(out_size)}, got values in [{low}, {high}]")
    x = _args.with_batch(input, batched)
    i = _args.with_batch(indices, batched)
    impl = _backend.choose(op, n, input.device)
    if impl == "native":
        result = getattr(F, f"max_unpool{n}d")(x, i, k, s, p, output_size=out_size)
    elif impl == "ext":
        result = torch.ops.ndops.max_unpool_nd(x, i, out_size)
    else:
        result = _fallback.max_unpool_nd(x, i, out_size)
    return _args.drop_batch(result, batched)


def _unpool_output_size(op, in_size, k, s, p, output_size):
    """torch's rule: the default size, or a requested one strictly within one stride of it."""
    default = [(i - 1) * si + ki - 2 * pi for i, ki, si, pi in zip(in_size, k, s, p)]
    n = len(default)
    if output_size is None:
        if any(v < 0 for v in default):
            raise ValueError(f"ndops.{op}: the output size {tuple(default)} computed from "
                             f"kernel_size, stride and padding is negative; lower padding")
        return default
    if not (_args._is_sequence(output_size) and len(output_size) in (n, n + 2)
            and all(_args._is_int(v) for v in output_size)):
        raise ValueError(f"ndops.{op}: output_size must be a sequence of {n} ints (or {n + 2} "
                         f"with the batch and channel dims), got {output_size!r}")
    requested = [int(v) for v in output_size[-n:]]
    for dim, (want, base, si) in enumerate(zip(requested, default, s)):
        if not (base - si < want < base + si) or want < 0:
            raise ValueError(f"ndops.{op}: output_size {tuple(requested)} is out of range: "
                             f"dim {dim} must be >= 0 and strictly between {base - si} and "
                             f"{base + si}")
    return requested


# ---- adaptive pooling -------------------------------------------------------------------------

def _adaptive_args(op, input, output_size, spatial_dims):
    """N, batched and the output size (None entries replaced by the input size), validated."""
    n, batched = _args.spatial_rank(op, input, spatial_dims=spatial_dims,
                                    per_dim={"output_size": output_size})
    if _args._is_int(output_size):
        output_size = (output_size,) * n
    if not (_args._is_sequence(output_size) and len(output_size) == n
            and all(v is None or _args._is_int(v) for v in output_size)):
        raise ValueError(f"ndops.{op}: output_size must be an int or a tuple of {n} ints or "
                         f"None (one per spatial dim), got {output_size!r}")
    out = tuple(size if v is None else int(v) for v, size in zip(output_size, input.shape[-n:]))
    _args.check_nonnegative(op, "output_size", out)
    _check_dtype(op, input)
    _check_not_empty(op, input, batched)
    return n, batched, out


def adaptive_avg_pool_nd(input, output_size, *, spatial_dims=None):
    """Adaptive average pooling: ``torch.nn.functional.adaptive_avg_pool{1,2,3}d`` for any N.

    input: (B, C, *spatial) or unbatched (C, *spatial); returns (B, C, *output_size). Output
    position i of a dim averages input [floor(i * in / out), ceil((i + 1) * in / out)).
    ``output_size``: an int or N ints/None (None keeps that input size). N: see ``ndops._args``.
    """
    op = "adaptive_avg_pool_nd"
    n, batched, out = _adaptive_args(op, input, output_size, spatial_dims)
    x = _args.with_batch(input, batched)
    impl = _backend.choose(op, n, input.device, numel=input.numel())
    if impl == "native":
        result = getattr(F, f"adaptive_avg_pool{n}d")(x, out)
    elif impl == "ext":
        result = torch.ops.ndops.adaptive_avg_pool_nd(x, out)
    else:
        result = _fallback_adaptive.adaptive_avg_pool_nd(x, out)
    return _args.drop_batch(result, batched)


def adaptive_max_pool_nd(input, output_size, return_indices=False, *, spatial_dims=None):
    """Adaptive max pooling: ``torch.nn.functional.adaptive_max_pool{1,2,3}d`` for any N.

    input: (B, C, *spatial) or unbatched (C, *spatial); returns (B, C, *output_size), and with
    ``return_indices`` int64 indices flat over each plane's N spatial dims. Windows as in
    ``adaptive_avg_pool_nd``; ties and NaNs as in ``max_pool_nd``. N: see ``ndops._args``.
    """
    op = "adaptive_max_pool_nd"
    n, batched, out = _adaptive_args(op, input, output_size, spatial_dims)
    x = _args.with_batch(input, batched)
    impl = _backend.choose(op, n, input.device, numel=input.numel())
    if impl == "native":
        result = getattr(F, f"adaptive_max_pool{n}d")(x, out, return_indices)
    elif impl == "ext":
        wants = return_indices or (x.requires_grad and torch.is_grad_enabled())
        result = torch.ops.ndops.adaptive_max_pool_nd(x, out, wants)
        result = result if return_indices else result[0]
    else:
        result = _fallback_adaptive.adaptive_max_pool_nd(x, out, return_indices)
    return _args.drop_batch(result, batched)
