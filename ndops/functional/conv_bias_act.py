"""``conv_bias_act_nd``: an N-d convolution with nn.Conv's padding modes, its bias and an
activation, in one op (the compiled kernel applies the padding while gathering and the
activation while moving the output into place, so neither costs a pass of its own)."""
import numbers

import torch
import torch.nn.functional as F

from .. import _args, _backend
from ..fallback import conv as _fallback
from ..fallback import pad as _fallback_pad
from ..fallback.norm import ACTIVATIONS, apply_activation
from .conv import (_conv_arguments, _kernel_padding, _pad_right, autocast_args,
                   reduced_precision_order)

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

_backend.set_preference("conv_bias_act_nd", reduced_precision_order)


def _check_activation(op, activation, negative_slope):
    if not isinstance(activation, str) or activation not in ACTIVATIONS:
        raise ValueError(f"ndops.{op}: activation must be one of {ACTIVATIONS}, got "
                         f"{activation!r}")
    if not isinstance(negative_slope, numbers.Real) or isinstance(negative_slope, bool):
        raise ValueError(f"ndops.{op}: negative_slope must be a real number, got "
                         f"{negative_slope!r}")


def _check_padding_mode(op, padding_mode, in_size, symmetric, extra):
    """nn.Conv's padding modes and the limits F.pad sets on them (per dim and side)."""
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(f"ndops.{op}: padding_mode must be one of {PADDING_MODES}, got "
                         f"{padding_mode!r}")
    for d, (size, p, e) in enumerate(zip(in_size, symmetric, extra)):
        pair = f"padding ({p}, {p + e}) for spatial dim {d} of size {size}"
        if padding_mode == "reflect" and p + e >= size:
            raise ValueError(f"ndops.{op}: padding_mode='reflect' needs padding < the input "
                             f"size in every dim, got {pair}")
        if padding_mode == "circular" and p + e > size:
            raise ValueError(f"ndops.{op}: padding_mode='circular' needs padding <= the input "
                             f"size in every dim, got {pair}")


def _torch_pad(symmetric, extra):
    """(before, after) pairs in F.pad's order (last dim first)."""
    return [v for p, e in zip(reversed(symmetric), reversed(extra)) for v in (p, p + e)]


def conv_bias_act_nd(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1,
                     activation="relu", negative_slope=0.01, padding_mode="zeros", *,
                     spatial_dims=None):
    """``act(conv(input, weight) + bias)`` for any number N of spatial dims, with nn.Conv's
    ``padding_mode``.

    Shapes, padding (int, N-tuple, 'valid', 'same') and N as in ``conv_nd`` (rules in
    ``ndops._args``). ``activation``: "none", "relu", "leaky_relu" (with ``negative_slope``),
    "silu", "gelu" (exact, erf) or "gelu_tanh" (``F.gelu(approximate="tanh")``).
    ``padding_mode``: "zeros", "reflect", "replicate" or "circular", applied as
    ``nn.Conv{1,2,3}d`` does (F.pad of the input, then an unpadded conv). The compiled kernel
    (backend "ext") pads while gathering its taps, never making a padded copy, and fuses the
    activation; native and fallback compute the conv, then the activation.
    Under ``torch.autocast`` it computes in the region's dtype, as torch's convs do.
    Differences from torch: any N, every padding mode at any N; bad arguments raise ValueError.
    """
    op = "conv_bias_act_nd"
    input, weight, bias = autocast_args(input, weight, bias)
    n, batched, stride, dilation, symmetric, extra = _conv_arguments(
        op, input, weight, bias, stride, padding, dilation, groups, spatial_dims)
    _check_activation(op, activation, negative_slope)
    negative_slope = float(negative_slope)
    _check_padding_mode(op, padding_mode, input.shape[-n:], symmetric, extra)
    padded = padding_mode != "zeros"

    x = _args.with_batch(input, batched)
    # torch's reflect/replicate reject an input without channels (a valid conv here).
    native_ok = padding_mode in ("zeros", "circular") or x.shape[1] > 0
    impl = _backend.choose(op, n, input.device, native_ok=native_ok, call=dict(input=x))
    if impl == "ext":
        pads = _kernel_padding(symmetric, extra)
        if activation == "none":
            out = torch.ops.ndops.conv_nd(x, weight, bias, stride, pads, dilation, groups,
                                          padding_mode)
        else:
            out = torch.ops.ndops.conv_bias_act_nd(x, weight, bias, stride, pads, dilation,
                                                   groups, activation, negative_slope,
                                                   padding_mode)[0]
        return _args.drop_batch(out, batched)
    if impl == "native":
        if padded:
            x = F.pad(x, _torch_pad(symmetric, extra), mode=padding_mode)
            torch_padding = 0
        else:
            torch_padding = padding if isinstance(padding, str) else symmetric
        z = getattr(F, f"conv{n}d")(x, weight, bias, stride, torch_padding, dilation, groups)
    else:
        if padded:
            x = _fallback_pad.pad_nd(x, _torch_pad(symmetric, extra), padding_mode, 0.0)
            symmetric = (0,) * n
        else:
            x = _pad_right(x, extra)
        z = _fallback.conv_nd(x, weight, bias, stride, symmetric, dilation, groups)
    return _args.drop_batch(apply_activation(z, activation, negative_slope), batched)
