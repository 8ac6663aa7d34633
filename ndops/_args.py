"""Argument normalization and validation shared by every op in ``ndops.functional``.

Checks run once, here and in the functional wrappers, before any backend is chosen, so every
backend raises the same errors. Messages name the op, the argument and the expected form.

How N (the number of spatial dims) is determined, for every op:
1. from ``spatial_dims=`` when given;
2. else from the rank of a weight tensor (conv) or the length of any per-dim tuple argument
   (kernel_size, stride, padding, dilation, output_size, size, scale_factor, ...);
3. else from the input, taken as batched: ``N = input.dim() - 2``.
All sources that are present must agree, or a ValueError is raised. With N known, an input of
rank N + 2 is batched (B, C, *spatial) and one of rank N + 1 is unbatched (C, *spatial), as in
torch; any other rank raises.
"""
import numbers

import torch


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_sequence(v):
    return isinstance(v, (tuple, list, torch.Size))


def tuple_lengths(**args):
    """``{name: len(value)}`` for each argument given as a sequence (an int says nothing of N)."""
    return {name: len(value) for name, value in args.items() if _is_sequence(value)}


def declared_rank(where, *, spatial_dims=None, lengths=None):
    """N as fixed by ``spatial_dims`` and the per-dim argument ``lengths`` (name -> N), or
    None when neither says. ``where`` ("ndops.<op>" or "ndops.nn.<Module>") starts messages.
    """
    sources = {}
    if spatial_dims is not None:
        if not _is_int(spatial_dims) or spatial_dims < 1:
            raise ValueError(f"{where}: spatial_dims must be an int >= 1, got {spatial_dims!r}")
        sources["spatial_dims"] = int(spatial_dims)
    sources.update(lengths or {})
    if len(set(sources.values())) > 1:
        described = ", ".join(f"{k} -> N={v}" for k, v in sources.items())
        raise ValueError(f"{where}: conflicting numbers of spatial dims ({described})")
    if not sources:
        return None
    n = next(iter(sources.values()))
    if n < 1:
        raise ValueError(f"{where}: at least one spatial dim is needed, got N={n}")
    return n


def spatial_rank(op, input, *, spatial_dims=None, per_dim=None, weight=None):
    """Return ``(n, batched)`` for ``input`` under the rules in this module's docstring.

    ``per_dim`` maps argument names to their values; those given as sequences fix N.
    """
    if not isinstance(input, torch.Tensor):
        raise TypeError(f"ndops.{op}: input must be a torch.Tensor, got {type(input).__name__}")
    lengths = {}
    if weight is not None:
        if weight.dim() < 3:
            raise ValueError(f"ndops.{op}: weight must have shape (C_out, C_in/groups, *kernel) "
                             f"with at least one spatial dim, got {tuple(weight.shape)}")
        lengths["weight"] = weight.dim() - 2
    lengths.update(tuple_lengths(**(per_dim or {})))
    n = declared_rank(f"ndops.{op}", spatial_dims=spatial_dims, lengths=lengths)
    if n is not None:
        if input.dim() == n + 2:
            return n, True
        if input.dim() == n + 1:
            return n, False
        raise ValueError(
            f"ndops.{op}: input must have shape (B, C, *spatial) or (C, *spatial) with N={n} "
            f"spatial dims (rank {n + 2} or {n + 1}), got shape {tuple(input.shape)}")
    if input.dim() < 3:
        raise ValueError(
            f"ndops.{op}: input must have shape (B, C, *spatial) with at least one spatial dim, "
            f"got shape {tuple(input.shape)}; for an unbatched input pass spatial_dims= or "
            f"per-dim tuples")
    return input.dim() - 2, True


def window_args(op, n, kernel_size, stride, padding, dilation=1):
    """kernel_size, stride (None: kernel_size, as pooling defaults), padding and dilation of a
    sliding-window op as checked N-tuples ``(k, s, p, d)``."""
    k = as_tuple(op, "kernel_size", kernel_size, n)
    s = k if stride is None else as_tuple(op, "stride", stride, n)
    p = as_tuple(op, "padding", padding, n)
    d = as_tuple(op, "dilation", dilation, n)
    check_positive(op, "kernel_size", k)
    check_positive(op, "stride", s)
    check_positive(op, "dilation", d)
    check_nonnegative(op, "padding", p)
    return k, s, p, d


def as_tuple(op, name, value, n, *, allow_none=False):
    """``value`` (an int or a length-``n`` sequence of ints) as a tuple of ``n`` ints."""
    if value is None and allow_none:
        return None
    if _is_int(value):
        return (int(value),) * n
    if _is_sequence(value) and len(value) == n and all(_is_int(v) for v in value):
        return tuple(int(v) for v in value)
    raise ValueError(f"ndops.{op}: {name} must be an int or a tuple of {n} ints (one per "
                     f"spatial dim), got {value!r}")


def check_positive(op, name, values):
    if any(v <= 0 for v in values):
        raise ValueError(f"ndops.{op}: {name} must be > 0 in every dim, got {values}")


def check_nonnegative(op, name, values):
    if any(v < 0 for v in values):
        raise ValueError(f"ndops.{op}: {name} must be >= 0 in every dim, got {values}")


def check_floating(op, name, tensor):
    if not (tensor.is_floating_point() or tensor.is_complex()):
        raise RuntimeError(f"ndops.{op}: {name} must be a floating-point tensor, "
                           f"got dtype {tensor.dtype}")


def check_same_device(op, ref_name, ref, **others):
    """Every tensor in ``others`` (name=tensor or None) must be on ``ref``'s device."""
    for name, t in others.items():
        if t is not None and t.device != ref.device:
            raise RuntimeError(f"ndops.{op}: {name} is on {t.device} but {ref_name} is on "
                               f"{ref.device}; move them to the same device")


def check_same_dtype_device(op, ref_name, ref, **others):
    """Every tensor in ``others`` (name=tensor or None) must match ``ref``'s dtype and device."""
    for name, t in others.items():
        if t is None:
            continue
        check_same_device(op, ref_name, ref, **{name: t})
        if t.dtype != ref.dtype:
            raise RuntimeError(f"ndops.{op}: {name} has dtype {t.dtype} but {ref_name} has "
                               f"dtype {ref.dtype}; they must match")


def check_output_size(op, out_size, in_size):
    """Raise when a computed output size is empty (the window does not fit)."""
    if any(s <= 0 for s in out_size):
        raise ValueError(f"ndops.{op}: the output would be empty (computed output size "
                         f"{tuple(out_size)} from input size {tuple(in_size)}); the kernel is "
                         f"larger than the padded input")


def with_batch(input, batched):
    """Add a batch dim to an unbatched input (undo with ``drop_batch``)."""
    return input if batched else input.unsqueeze(0)


def drop_batch(output, batched):
    """Remove the batch dim added by ``with_batch`` (from a tensor or tuple of tensors)."""
    if batched:
        return output
    if isinstance(output, tuple):
        return tuple(o.squeeze(0) for o in output)
    return output.squeeze(0)
