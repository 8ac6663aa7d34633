"""N-d interpolation: ``F.interpolate`` with the same arguments, defaults, output sizes and source
coordinates, at any N."""
import math
import numbers

import torch
import torch.nn.functional as F

from .. import _args, _backend
from ..fallback import interpolate as _fallback
from . import pool as _pool

# The compiled CPU kernels come first at every N: at N <= 3 they beat torch's own by 1.5-9x on
# contiguous (B, C, *spatial) fp32/bf16 input, forward and forward + backward (1.1-1.6x on 3-D
# channels-last; 0.7-1.1x on 2-D channels-last and on inputs of a few hundred elements), measured
# on the project machine with benchmarks/bench_interpolate.py.
_backend.set_preference("interpolate_nd", _backend.compiled_first_on_cpu())

_MODES = ("nearest", "nearest-exact", "linear", "bilinear", "trilinear", "area")
_LINEAR_ALIASES = {"bilinear": 2, "trilinear": 3}
_TORCH_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _canonical_mode(op, mode, n):
    """"nearest", "nearest-exact", "linear" or "area"; "bilinear"/"trilinear" only at their N."""
    if not isinstance(mode, str) or mode not in _MODES:
        raise ValueError(f"ndops.{op}: mode must be one of {', '.join(_MODES)}, got {mode!r}")
    if mode in _LINEAR_ALIASES:
        if n != _LINEAR_ALIASES[mode]:
            raise ValueError(f"ndops.{op}: mode={mode!r} needs N={_LINEAR_ALIASES[mode]} spatial "
                             f"dims, got N={n}; mode='linear' is multilinear at any N")
        return "linear"
    return mode


def _scale_tuple(op, scale_factor, n):
    """``scale_factor`` (a number or N numbers) as N finite floats > 0."""
    values = scale_factor if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * n
    if len(values) != n or not all(isinstance(v, numbers.Real) and not isinstance(v, bool)
                                   for v in values):
        raise ValueError(f"ndops.{op}: scale_factor must be a number or a tuple of {n} numbers "
                         f"(one per spatial dim), got {scale_factor!r}")
    values = tuple(float(v) for v in values)
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"ndops.{op}: scale_factor must be finite and > 0 in every dim, got "
                         f"{scale_factor!r}")
    return values


def _check_dtype(op, input, mode):
    if input.is_floating_point():
        return
    if input.dtype == torch.uint8 and mode in ("nearest", "nearest-exact"):
        return
    raise RuntimeError(f"ndops.{op}: input must be a floating-point tensor (or uint8 for the "
                       f"nearest modes) with mode={mode!r}, got dtype {input.dtype}")


def _torch_antialias_ok(n, in_size, output_size, scales):
    """Whether torch's antialiased kernel (2 dims only) computes this call right. Its CPU
    forward is wrong for an output width of 1 (when the height changes), its backward for a dim
    that keeps its size under a scale factor != 1 (the forward copies that dim)."""
    if n != 2 or output_size[-1] == 1:
        return False
    return scales is None or all(i != o or s == 1.0
                                 for i, o, s in zip(in_size, output_size, scales))


def interpolate_nd(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                   recompute_scale_factor=None, antialias=False, *, spatial_dims=None):
    """Resample the N spatial dims: ``F.interpolate`` for any number N of spatial dims.

    input (B, C, *spatial) or unbatched (C, *spatial); output (B, C, *size), or with
    ``scale_factor`` out = floor(in * scale_factor) per dim. Exactly one of size/scale_factor.
    Modes: "nearest", "nearest-exact", "linear" (multilinear at any N; "bilinear" and
    "trilinear" are accepted at N = 2 and N = 3), "area" (adaptive average pooling). As in
    torch, a scale_factor (unless recompute_scale_factor=True) sets the source coordinates
    (ratio 1/scale_factor, not in/out), and align_corners applies to the linear mode only.
    N comes from spatial_dims, from size/scale_factor given as tuples, else from input.dim() - 2
    (rules in ``ndops._args``).
    Differences from torch: any N; "linear" works at any N (torch: N = 1 only); antialias=True
    works with the linear mode at any N (torch: bilinear/bicubic at N = 2; where torch's CPU
    kernel is wrong, see ``_torch_antialias_ok``, ndops runs its fallback); no "bicubic" or
    "lanczos" modes; uint8 input only for the nearest modes; unbatched input when N is given;
    bad arguments raise ValueError (torch: various error types). Nearest source indices follow
    torch's 1-D/3-D kernels (its 2-D CPU kernel, for outputs narrower than 128, instead copies
    when out == in and halves when out == 2 * in, whatever the scale_factor); torch runs N <= 3.
    Non-finite input (linear mode): a term of weight 0 turns an inf into NaN (0 * inf), and the
    compiled kernel skips some of the zero-weight terms that torch's kernels compute (taps that
    coincide at an edge, or in a dim that keeps its size), so with inf or NaN in the input its
    NaNs can fall in fewer places than torch's; the fallback follows torch.
    """
    op = "interpolate_nd"
    n, batched = _args.spatial_rank(op, input, spatial_dims=spatial_dims,
                                    per_dim={"size": size, "scale_factor": scale_factor})
    mode = _canonical_mode(op, mode, n)
    if mode == "linear":
        align_corners = bool(align_corners)
    elif align_corners is not None:
        raise ValueError(f"ndops.{op}: align_corners option can only be set with the "
                         f"interpolating modes: linear | bilinear | trilinear (mode={mode!r})")
    if antialias and mode != "linear":
        raise ValueError(f"ndops.{op}: antialias=True needs mode='linear' (or 'bilinear' / "
                         f"'trilinear'), got mode={mode!r}")
    if (size is None) == (scale_factor is None):
        raise ValueError(f"ndops.{op}: exactly one of size or scale_factor must be given, got "
                         f"size={size!r}, scale_factor={scale_factor!r}")
    if size is not None and recompute_scale_factor:
        raise ValueError(f"ndops.{op}: recompute_scale_factor is not meaningful with an "
                         f"explicit size")
    _check_dtype(op, input, mode)
    x = _args.with_batch(input, batched)
    in_size = tuple(x.shape[2:])
    if x.shape[1] == 0 or 0 in in_size:
        raise ValueError(f"ndops.{op}: input must have channels and spatial sizes > 0 (only the "
                         f"batch may be empty), got shape {tuple(input.shape)}")

    if size is not None:
        output_size = _args.as_tuple(op, "size", size, n)
        _args.check_positive(op, "size", output_size)
        scales = None
    else:
        scales = _scale_tuple(op, scale_factor, n)
        output_size = tuple(math.floor(i * s) for i, s in zip(in_size, scales))
        if min(output_size) < 1:
            raise ValueError(f"ndops.{op}: the output would be empty: scale_factor={scales} "
                             f"gives output size {output_size} from input size {in_size}")
        # torch: "area", and recompute_scale_factor=True, use in/out as the ratio.
        if recompute_scale_factor or mode == "area":
            scales = None

    native_ok = not antialias or _torch_antialias_ok(n, in_size, output_size, scales)
    impl = _backend.choose(op, n, x.device, native_ok=native_ok)
    if impl == "ext" and antialias:
        # The compiled kernels have no antialias: the default choice goes on to torch where it
        # runs the call, else (and under a forced "ext") to the fallback.
        runs_native = native_ok and n <= 3 and _backend.forced_backend() is None
        impl = "native" if runs_native else "fallback"
    if impl == "native":
        torch_mode = _TORCH_LINEAR[n] if mode == "linear" else mode
        out = F.interpolate(x, size=output_size if scales is None else None,
                            scale_factor=scales, mode=torch_mode,
                            align_corners=align_corners, antialias=antialias)
    elif mode == "area":
        # "area" is adaptive average pooling, which has backends of its own: a forced "ext"
        # (the compiled interpolation kernels) leaves the pooling's choice to its default.
        with _backend.backend(None if impl == "ext" else impl):
            out = _pool.adaptive_avg_pool_nd(x, output_size)
    elif impl == "ext":
        out = torch.ops.ndops.interpolate_nd(x, list(output_size),
                                             None if scales is None else list(scales), mode,
                                             bool(align_corners), False)
    else:
        out = _fallback.interpolate_nd(x, output_size, scales, mode, align_corners, antialias)
    return _args.drop_batch(out, batched)
