"""N-d batch normalization: ``F.batch_norm`` with the same arguments, defaults and running-stat
updates, with torch's rules checked up front and the same checks for every backend; and batch
norm fused with the activation that follows it (``batch_norm_act_nd``)."""
import math
import numbers

import torch
import torch.nn.functional as F

from .. import _args, _backend
from ..fallback import norm as _fallback

_REDUCED_PRECISION = (torch.float16, torch.bfloat16)


def _check_parameters(op, input, channels, **params):
    """Each of ``params`` (name=tensor or None) must have shape (C,), be on input's device, and
    all share one dtype: input's, or float32 for a half/bfloat16 input (torch's mixed mode)."""
    given = {name: t for name, t in params.items() if t is not None}
    for name, t in given.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"ndops.{op}: {name} must be a torch.Tensor or None, got "
                            f"{type(t).__name__}")
        if tuple(t.shape) != (channels,):
            raise ValueError(f"ndops.{op}: {name} must have shape (C,) = ({channels},) for the "
                             f"input's C={channels} channels (dim 1), got {tuple(t.shape)}")
        _args.check_same_device(op, "input", input, **{name: t})
    dtypes = {t.dtype for t in given.values()}
    allowed = {input.dtype}
    if input.dtype in _REDUCED_PRECISION:
        allowed.add(torch.float32)
    if len(dtypes) > 1 or not dtypes <= allowed:
        described = ", ".join(f"{name}: {t.dtype}" for name, t in given.items())
        raise RuntimeError(f"ndops.{op}: weight, bias, running_mean and running_var must share "
                           f"one dtype, the input's ({input.dtype}) or float32 for a half/"
                           f"bfloat16 input; got {described}")


def _check_number(op, name, value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise ValueError(f"ndops.{op}: {name} must be a float, got {value!r}")


def _batch_norm_input(op, input, running_mean, running_var, weight, bias, training, momentum,
                      eps, spatial_dims):
    """Check batch norm's arguments (torch's rules); return ``(n, batched, x)`` with ``x`` the
    batched input."""
    if spatial_dims is None and isinstance(input, torch.Tensor) and input.dim() == 2:
        n, batched = 0, True  # (B, C): BatchNorm1d's no-spatial case
    else:
        n, batched = _args.spatial_rank(op, input, spatial_dims=spatial_dims)
    if not input.is_floating_point():
        raise RuntimeError(f"ndops.{op}: input must be a floating-point tensor, got dtype "
                           f"{input.dtype}")
    x = _args.with_batch(input, batched)
    channels = x.shape[1]
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"ndops.{op}: running_mean and running_var must both be given or "
                         f"both be None")
    if not training and running_mean is None:
        raise ValueError(f"ndops.{op}: running_mean and running_var must be given when "
                         f"training=False (they normalize in evaluation mode)")
    _check_parameters(op, x, channels, running_mean=running_mean, running_var=running_var,
                      weight=weight, bias=bias)
    _check_number(op, "momentum", momentum)
    _check_number(op, "eps", eps)
    values_per_channel = x.shape[0] * math.prod(x.shape[2:])
    if training and values_per_channel == 1:
        raise ValueError(f"ndops.{op}: Expected more than 1 value per channel when training, "
                         f"got input size {tuple(input.shape)}")
    return n, batched, x


def _torch_batch_norm(x, *args):
    """``F.batch_norm`` on (B, C, *spatial) of any rank. cuDNN's kernel takes 2-5-D input only,
    so inputs with more than 3 spatial dims go through a (B, C, prod(spatial)) view: batch
    statistics are over every dim but C, so the result is the same."""
    if x.dim() <= 5:
        return F.batch_norm(x, *args)
    flat = x.reshape(x.shape[0], x.shape[1], math.prod(x.shape[2:]))
    return F.batch_norm(flat, *args).view(x.shape)


def batch_norm_nd(input, running_mean, running_var, weight=None, bias=None, training=False,
                  momentum=0.1, eps=1e-5, *, spatial_dims=None):
    """Batch normalization over (B, C, *spatial): ``F.batch_norm`` for any N (including 0).

    input (B, C, *spatial), or unbatched (C, *spatial) when ``spatial_dims`` is given;
    running_mean, running_var, weight, bias: (C,) or None. Output: input's shape. training=True
    normalizes with the batch statistics (over every dim but C) and, when running stats are
    given, updates them in place: running = (1 - momentum) * running + momentum * batch, with
    the unbiased batch variance; training=False needs the running stats and uses them.
    N is ``spatial_dims`` when given, else input.dim() - 2 (rules in ``ndops._args``).
    Differences from torch: unbatched input with spatial_dims; bad arguments raise ValueError
    (torch: RuntimeError); running_mean and running_var must be given together.
    """
    op = "batch_norm_nd"
    n, batched, x = _batch_norm_input(op, input, running_mean, running_var, weight, bias,
                                      training, momentum, eps, spatial_dims)
    impl = _backend.choose(op, n, x.device)
    if impl == "native":
        out = _torch_batch_norm(x, running_mean, running_var, weight, bias, bool(training),
                                float(momentum), float(eps))
    else:
        out = _fallback.batch_norm_nd(x, running_mean, running_var, weight, bias,
                                      bool(training), float(momentum), float(eps))
    return _args.drop_batch(out, batched)


# On the CPU the fused kernel beats F.batch_norm + the torch activation at every N for inputs
# above ~100K elements (relu, training, fwd+bwd, 1-2 threads on the shared 2-core machine:
# B2 C32 24^4 3-4.5x, B4 C32 16^3 2x, B2 C64 32^2 1.4x; silu/gelu forward 3-4x), and loses
# ~0.3 ms of call overhead on tiny ones (8K elements): it comes first there.
_backend.set_preference("batch_norm_act_nd", _backend.compiled_first_on_cpu())


def batch_norm_act_nd(input, running_mean, running_var, weight=None, bias=None, training=False,
                      momentum=0.1, eps=1e-5, activation="none", *, negative_slope=0.01,
                      spatial_dims=None):
    """Batch normalization followed by an activation: ``act(F.batch_norm(...))``, any N.

    Arguments, shapes, running-stat updates and N as in ``batch_norm_nd``; ``activation`` is
    "none", "relu", "leaky_relu" (with ``negative_slope``), "silu", "gelu" (exact, erf) or
    "gelu_tanh" (``F.gelu(approximate="tanh")``). The compiled kernel (backend "ext", CPU) fuses
    the passes: training reads x from memory once (statistics, then normalization of each
    cache-sized channel group), the activated output is written once, and the backward
    recomputes the pre-activation from x instead of saving it (csrc/cpu/batch_norm.cpp).
    Differences from torch: those of ``batch_norm_nd``; half/bfloat16 results are rounded once
    (after the activation) by the ext and fallback backends; the ext backend copies a
    non-contiguous (e.g. channels-last) input to a contiguous one and returns a contiguous
    output.
    """
    op = "batch_norm_act_nd"
    n, batched, x = _batch_norm_input(op, input, running_mean, running_var, weight, bias,
                                      training, momentum, eps, spatial_dims)
    if not isinstance(activation, str) or activation not in _fallback.ACTIVATIONS:
        raise ValueError(f"ndops.{op}: activation must be one of {_fallback.ACTIVATIONS}, got "
                         f"{activation!r}")
    _check_number(op, "negative_slope", negative_slope)
    training, momentum, eps = bool(training), float(momentum), float(eps)
    negative_slope = float(negative_slope)

    impl = _backend.choose(op, n, x.device)
    if impl == "native":
        out = _fallback.apply_activation(
            _torch_batch_norm(x, running_mean, running_var, weight, bias, training, momentum,
                              eps),
            activation, negative_slope)
    elif impl == "ext":
        out, _, _, new_mean, new_var = torch.ops.ndops.batch_norm_act_nd(
            x, running_mean, running_var, weight, bias, training, momentum, eps, activation,
            negative_slope)
        if training and running_mean is not None:  # the op is functional: store its update
            with torch.no_grad():
                running_mean.copy_(new_mean)
                running_var.copy_(new_var)
    else:
        out = _fallback.batch_norm_act_nd(x, running_mean, running_var, weight, bias, training,
                                          momentum, eps, activation, negative_slope)
    return _args.drop_batch(out, batched)
