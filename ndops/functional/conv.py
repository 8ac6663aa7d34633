"""N-d convolution and transposed convolution: ``F.conv{1,2,3}d`` and
``F.conv_transpose{1,2,3}d`` with the same arguments, defaults and output sizes, at any N."""
import numbers

import math
import pathlib
import platform

import torch
import torch.nn.functional as F

from .. import _args, _backend
from ..fallback import conv as _fallback


def _check_tensor(op, name, value):
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"ndops.{op}: {name} must be a torch.Tensor, got {type(value).__name__}")


def _check_groups(op, groups):
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups <= 0:
        raise ValueError(f"ndops.{op}: groups must be a positive int, got {groups!r}")


def _check_divides(op, groups, what, channels):
    if channels % groups:
        raise ValueError(f"ndops.{op}: groups={groups} must divide {what}, got {channels}")


def _check_common(op, input, weight, bias, n, stride, dilation, groups):
    """Checks shared by both ops; returns (stride, dilation) as N-tuples."""
    _args.check_floating(op, "input", input)
    _args.check_same_dtype_device(op, "input", input, weight=weight, bias=bias)
    _args.check_positive(op, "kernel size (weight.shape[2:])", tuple(weight.shape[2:]))
    stride = _args.as_tuple(op, "stride", stride, n)
    _args.check_positive(op, "stride", stride)
    dilation = _args.as_tuple(op, "dilation", dilation, n)
    _args.check_positive(op, "dilation", dilation)
    _check_groups(op, groups)
    if any(s == 0 for s in input.shape[-n:]):
        raise ValueError(f"ndops.{op}: input must have spatial sizes > 0, got input of shape "
                         f"{tuple(input.shape)}")
    return stride, dilation


def _check_bias(op, bias, out_channels):
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(f"ndops.{op}: bias must have shape (out_channels,) = ({out_channels},), "
                         f"got {tuple(bias.shape)}")


def _same_padding(kernel, dilation):
    """torch's padding='same': d*(k-1) zeros per dim, half (rounded down) on the left and the
    rest on the right. Returns (symmetric part, extra on the right) as N-tuples."""
    total = [d * (k - 1) for k, d in zip(kernel, dilation)]
    left = tuple(t // 2 for t in total)
    return left, tuple(t - 2 * l for t, l in zip(total, left))


def _conv_padding(op, padding, n, stride, kernel, dilation):
    """conv_nd's padding as (symmetric part, extra zeros on the right), both N-tuples."""
    if padding == "valid":
        return (0,) * n, (0,) * n
    if padding == "same":
        if any(s != 1 for s in stride):
            raise ValueError(f"ndops.{op}: padding='same' needs stride 1 in every dim (as in "
                             f"torch), got stride={stride}")
        return _same_padding(kernel, dilation)
    if isinstance(padding, str):
        raise ValueError(f"ndops.{op}: padding must be an int, a tuple of {n} ints, 'same' or "
                         f"'valid', got {padding!r}")
    symmetric = _args.as_tuple(op, "padding", padding, n)
    _args.check_nonnegative(op, "padding", symmetric)
    return symmetric, (0,) * n


def _pad_right(x, extra):
    """Zero-pad the spatial dims of ``x`` by ``extra`` (an N-tuple) at their right ends."""
    if not any(extra):
        return x
    return F.pad(x, [v for e in reversed(extra) for v in (0, e)])


def _conv_arguments(op, input, weight, bias, stride, padding, dilation, groups, spatial_dims):
    """conv_nd's checks (shared with conv_bias_act_nd). Returns (n, batched, stride, dilation,
    symmetric padding, extra zeros on the right), the last four as N-tuples."""
    _check_tensor(op, "weight", weight)
    if bias is not None:
        _check_tensor(op, "bias", bias)
    n, batched = _args.spatial_rank(op, input, spatial_dims=spatial_dims, weight=weight,
                                    per_dim={"stride": stride, "padding": padding,
                                             "dilation": dilation})
    stride, dilation = _check_common(op, input, weight, bias, n, stride, dilation, groups)
    kernel = tuple(weight.shape[2:])
    out_channels, in_channels = weight.shape[0], input.shape[-n - 1]
    _check_divides(op, groups, "in_channels (input.shape[-N-1])", in_channels)
    _check_divides(op, groups, "out_channels (weight.shape[0])", out_channels)
    if out_channels == 0:
        raise ValueError(f"ndops.{op}: weight must have out_channels (weight.shape[0]) > 0, "
                         f"got weight of shape {tuple(weight.shape)}")
    if weight.shape[1] * groups != in_channels:
        raise ValueError(
            f"ndops.{op}: input must have in_channels = weight.shape[1] * groups = "
            f"{weight.shape[1] * groups} channels (weight shape {tuple(weight.shape)}, "
            f"groups={groups}, in_channels/groups = weight.shape[1]), got input of shape "
            f"{tuple(input.shape)}")
    _check_bias(op, bias, out_channels)

    symmetric, extra = _conv_padding(op, padding, n, stride, kernel, dilation)
    in_size = input.shape[-n:]
    out_size = [(i + 2 * p + e - d * (k - 1) - 1) // s + 1 for i, p, e, d, k, s in
                zip(in_size, symmetric, extra, dilation, kernel, stride)]
    _args.check_output_size(op, out_size, in_size)
    return n, batched, stride, dilation, symmetric, extra


def _kernel_padding(symmetric, extra):
    """The compiled kernels' padding: N entries, or (before, after) pairs dim by dim where an
    asymmetric 'same' adds zeros on the right (no padded copy either way)."""
    if not any(extra):
        return list(symmetric)
    return [v for p, e in zip(symmetric, extra) for v in (p, p + e)]


def _conv_order(n, device_type, numel, call):
    """conv_nd's backend order (``_backend.set_preference``), from its call's input, weight,
    stride and dilation. On the CPU at N >= 4 the fallback goes first for strided convs of 1-2
    input channels per group (stems: the direct kernel is written for unit stride), measured
    2026-11-22 (BENCHMARKS.md, 2 threads, ext / fallback time): C1->64 24^4 k7 s2 and k3 s2
    1.3-1.7x slower, C1->8 32^4 k3 s2 fwd+bwd 1.2x. Strided convs with more channels stay
    compiled (C8-C32 k3 s2: 1.3-1.8x faster).
    Weights larger than the input stay compiled since the kernel stopped re-packing them
    (csrc/cpu/conv.cpp native_weight, weight_grad_kernel_pays). Same-script sweep, median of
    9 interleaved calls, 2 threads, fallback / ext time (> 1: ext faster), fwd and fwd+bwd:
    B1 C64->128 6^4 k3 s2 1.7-1.9x / 1.7-1.9x (was 0.47x / 0.34x); C128->128 6^4 k3 p1 1.02x /
    1.07x (0.99x / 0.44x); C256->256 3^4 k3 p1 1.61x / 1.76x (0.97x / 0.22x); conv_bias_act_nd
    the same shapes 1.03-1.54x. ResNet forward (ndops.models, width 64), default / forced
    fallback: resnet18 24^4 1.22x, 16^4 1.09x; resnet10 24^4 1.19x, 16^4 1.16x (with the
    former big-weight rule 1.03x, 1.00x, 1.07x, 1.05x).
    At N = 2, 3 the compiled kernel goes first for the first layers of
    ``_direct_beats_native``.
    At N <= 3 bfloat16 / float16 convs on CPUs without that arithmetic go compiled first
    (``computes_in_float``)."""
    if device_type != "cpu" or call is None:
        return _backend.DEFAULT_ORDER
    x, weight, stride, dilation = call["input"], call["weight"], call["stride"], call["dilation"]
    if n <= 3:
        first_layer = _direct_beats_native(n, x, weight, stride, dilation)
        ext_first = first_layer or computes_in_float(x.dtype)
        return ("ext", "native", "fallback") if ext_first else _backend.DEFAULT_ORDER
    strided_stem = weight.shape[1] <= 2 and any(s > 1 for s in stride)
    return ("fallback", "ext") if strided_stem else _backend.DEFAULT_ORDER


# The direct kernel needs AVX2 (csrc/cpu/conv_direct.cpp runs_direct); read once, not per call.
_CPU_HAS_AVX2 = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
_CPUINFO = pathlib.Path("/proc/cpuinfo")
_CPU_FLAGS = frozenset(_CPUINFO.read_text().split()) if _CPUINFO.exists() else frozenset()
_REDUCED_PRECISION_FLAGS = {torch.bfloat16: "avx512_bf16", torch.float16: "avx512_fp16"}


def computes_in_float(dtype):
    """Whether the compiled conv runs CPU convs of ``dtype`` in float32: bfloat16 / float16 on
    x86-64 (Linux) CPUs without AVX512-BF16 / AVX512-FP16 (csrc/cpu/conv.cpp,
    cpu_has_reduced_precision). There oneDNN's convs in those dtypes are reference loops, and
    torch's conv1d/2d/3d with them: fwd+bwd, 2 threads, Zen 3 (AVX2), torch / ndops time,
    2026-11-23: bfloat16 3-D B2 C16->16 24^3 22.5x, B2 C32->32 32^3 93x; 2-D B4 C32->32 64^2
    28x, B8 C64->64 64^2 30x; 1-D B8 C64->64 8192 18x; float16 the first three 23-33x."""
    flag = _REDUCED_PRECISION_FLAGS.get(dtype)
    return (flag is not None and platform.machine() == "x86_64" and bool(_CPU_FLAGS)
            and flag not in _CPU_FLAGS)


def _direct_beats_native(n, x, weight, stride, dilation):
    """Whether a 2-D / 3-D conv is a first layer that the compiled direct kernel (AVX2, float32,
    one input channel, unit stride and dilation) runs faster than torch's conv.
    Measured 2026-11-22 (BENCHMARKS.md; 2 threads, fastest of 7-15 calls, torch / ext time, fwd
    and fwd+bwd): 3-D B4 C1->16 64^3 k3 1.49x / 2.50x, B1 C1->8 16^3 1.97x / 1.80x, B1 C1->32
    48^3 k5 1.18x / 2.61x; 2-D B8 C1->32 128^2 1.94x / 2.68x, B4 C1->16 256^2 k5 1.63x / 3.14x.
    torch wins on tiny calls (3-D B1 C1->8 8^3, 110K multiply-adds: 1.04x / 0.80x; 2-D B1
    C1->16 32^2, 147K: 0.87x / 0.65x), so calls under 2^19 multiply-adds stay native; so do
    2-3 input channels (C2 1.03-1.04x, C3 0.91-0.95x), depthwise convs (not measured) and 1-D
    (mixed: B8 C1->32 4096 k7 fwd 0.87x, fwd+bwd 2.04x)."""
    if (n not in (2, 3) or x.shape[1] != 1 or x.dtype != torch.float32
            or weight.dtype != torch.float32 or any(s != 1 for s in stride)
            or any(d != 1 for d in dilation)
            or not _CPU_HAS_AVX2):
        return False
    multiply_adds = (x.shape[0] * weight.shape[0] * math.prod(x.shape[2:])
                     * math.prod(weight.shape[2:]))
    return multiply_adds >= 1 << 19


_backend.set_preference("conv_nd", _conv_order)


def reduced_precision_order(n, device_type, numel, call):
    """conv_transpose_nd's and conv_bias_act_nd's backend order: the default, with the compiled
    kernel first on the CPU for the dtypes it runs in float32 there (``computes_in_float``:
    torch's own convs in them are reference loops). bfloat16 conv_transpose3d B2 C32->16 16^3
    k2 s2, fwd+bwd, 2 threads, Zen 3: torch 582 ms, ndops 137 ms (2026-11-23)."""
    if device_type == "cpu" and call is not None and computes_in_float(call["input"].dtype):
        return ("ext", "native", "fallback")
    return _backend.DEFAULT_ORDER


_backend.set_preference("conv_transpose_nd", reduced_precision_order)


def autocast_args(*tensors):
    """The arguments as torch's autocast casts those of its convs (ops that autocast to lower
    precision): inside an autocast region for the input's device, every floating-point tensor
    but float64 becomes the region's dtype, as with ``F.conv3d``; elsewhere, unchanged. Non-
    tensors pass through (the argument checks name them)."""
    if not isinstance(tensors[0], torch.Tensor):
        return tensors
    try:
        device_type = tensors[0].device.type
        if not torch.is_autocast_enabled(device_type):
            return tensors
        dtype = torch.get_autocast_dtype(device_type)
    except RuntimeError:  # a device type autocast does not know (meta)
        return tensors
    return tuple(t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point()
                 and t.dtype != torch.float64 else t for t in tensors)


def conv_nd(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
            spatial_dims=None):
    """N-d convolution: ``F.conv1d/2d/3d`` for any number N of spatial dims.

    input (B, C_in, *spatial) or unbatched (C_in, *spatial); weight (C_out, C_in/groups,
    *kernel); bias (C_out,) or None; output (B, C_out, *out), out = (in + 2p - d(k-1) - 1)//s + 1.
    padding: int, N-tuple, 'valid' or 'same' (stride 1 only; an odd total puts the extra zero
    on the right, as torch does). N is weight.dim() - 2 (rules in ``ndops._args``).
    Under ``torch.autocast`` it computes in the region's dtype, as torch's convs do.
    Differences from torch: any N; bad arguments raise ValueError (torch: RuntimeError).
    """
    op = "conv_nd"
    input, weight, bias = autocast_args(input, weight, bias)
    n, batched, stride, dilation, symmetric, extra = _conv_arguments(
        op, input, weight, bias, stride, padding, dilation, groups, spatial_dims)
    x = _args.with_batch(input, batched)
    impl = _backend.choose(op, n, x.device, call=dict(input=x, weight=weight, stride=stride,
                                                       dilation=dilation))
    if impl == "native":
        torch_padding = padding if isinstance(padding, str) else symmetric
        out = getattr(F, f"conv{n}d")(x, weight, bias, stride, torch_padding, dilation, groups)
    elif impl == "ext":
        out = torch.ops.ndops.conv_nd(x, weight, bias, stride, _kernel_padding(symmetric, extra),
                                      dilation, groups)
    else:
        x = _pad_right(x, extra)
        out = _fallback.conv_nd(x, weight, bias, stride, symmetric, dilation, groups)
    return _args.drop_batch(out, batched)


def conv_transpose_nd(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                      dilation=1, *, spatial_dims=None):
    """N-d transposed convolution: ``F.conv_transpose1d/2d/3d`` for any number N of spatial dims.

    input (B, C_in, *spatial) or unbatched (C_in, *spatial); weight (C_in, C_out/groups,
    *kernel); bias (C_out,) or None; output (B, C_out, *out),
    out = (in - 1)*s - 2p + d(k-1) + output_padding + 1, output_padding < max(s, d) per dim.
    N is weight.dim() - 2 (rules in ``ndops._args``).
    Under ``torch.autocast`` it computes in the region's dtype, as torch's convs do.
    Differences from torch: any N; bad arguments raise ValueError (torch: RuntimeError).
    """
    op = "conv_transpose_nd"
    input, weight, bias = autocast_args(input, weight, bias)
    _check_tensor(op, "weight", weight)
    if bias is not None:
        _check_tensor(op, "bias", bias)
    n, batched = _args.spatial_rank(op, input, spatial_dims=spatial_dims, weight=weight,
                                    per_dim={"stride": stride, "padding": padding,
                                             "output_padding": output_padding,
                                             "dilation": dilation})
    stride, dilation = _check_common(op, input, weight, bias, n, stride, dilation, groups)
    kernel = tuple(weight.shape[2:])
    in_channels = input.shape[-n - 1]
    if weight.shape[0] != in_channels:
        raise ValueError(
            f"ndops.{op}: input must have in_channels = weight.shape[0] = {weight.shape[0]} "
            f"channels (weight shape {tuple(weight.shape)} is (C_in, C_out/groups, *kernel)), "
            f"got input of shape {tuple(input.shape)}")
    _check_divides(op, groups, "in_channels (weight.shape[0])", in_channels)
    if weight.shape[1] == 0:
        raise ValueError(f"ndops.{op}: weight must have out_channels/groups (weight.shape[1]) "
                         f"> 0, got weight of shape {tuple(weight.shape)}")
    out_channels = weight.shape[1] * groups
    _check_bias(op, bias, out_channels)
    padding = _args.as_tuple(op, "padding", padding, n)
    _args.check_nonnegative(op, "padding", padding)
    output_padding = _args.as_tuple(op, "output_padding", output_padding, n)
    _args.check_nonnegative(op, "output_padding", output_padding)
    if any(q >= max(s, d) for q, s, d in zip(output_padding, stride, dilation)):
        raise ValueError(f"ndops.{op}: output_padding must be smaller than stride or dilation in "
                         f"every dim, got output_padding={output_padding}, stride={stride}, "
                         f"dilation={dilation}")
    in_size = input.shape[-n:]
    out_size = [(i - 1) * s - 2 * p + d * (k - 1) + q + 1 for i, s, p, d, k, q in
                zip(in_size, stride, padding, dilation, kernel, output_padding)]
    _args.check_output_size(op, out_size, in_size)

    x = _args.with_batch(input, batched)
    impl = _backend.choose(op, n, input.device, call=dict(input=x))
    if impl == "native":
        out = getattr(F, f"conv_transpose{n}d")(x, weight, bias, stride, padding, output_padding,
                                                groups, dilation)
    elif impl == "ext":
        out = torch.ops.ndops.conv_transpose_nd(x, weight, bias, stride, padding, output_padding,
                                                groups, dilation)
    else:
        out = _fallback.conv_transpose_nd(x, weight, bias, stride, padding, output_padding,
                                          groups, dilation)
    return _args.drop_batch(out, batched)
