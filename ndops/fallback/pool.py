"""Max/avg pooling and max unpooling at any N, exact, from torch's native 2-D/3-D pools.

A box window is a product of per-dim windows, so max and sum over it are separable: pool one
group of (at most ``native_max_dims``) spatial dims with a native call, then the next group
over the result. Groups run innermost first; each native pass takes the first maximum (and
the last NaN) of its window, so the innermost-first chain returns the row-major-first maximum
of the whole N-d window (and its last NaN), exactly as torch's 2-D/3-D kernels. Padding never
wins: native pools skip it. With ``return_indices`` each pass's indices (flat over its group)
are chained by a gather into indices flat over all N dims.

The arguments are normalized by ``ndops.functional``: x is (B, C, *spatial) and every per-dim
argument is a tuple of N ints. The helpers here are shared with ``adaptive_pool``.
"""
import math

import torch
import torch.nn.functional as F

_FLOAT_ACCUMULATE = (torch.float16, torch.bfloat16)


def dim_groups(n, native_max_dims):
    """[first, stop) ranges of spatial dims, at most ``native_max_dims`` long, innermost first."""
    if not 1 <= native_max_dims <= 3:
        raise ValueError(f"ndops.fallback: native_max_dims must be 1, 2 or 3, "
                         f"got {native_max_dims}")
    return [(max(0, stop - native_max_dims), stop) for stop in range(n, 0, -native_max_dims)]


def to_native(x, first, stop, rank):
    """View spatial dims [first, stop) of x as the spatial dims of a native ``rank``-D pool.

    Returns (lead, trail, 1.., *x.shape[2 + first: 2 + stop]): the batch, channel and outer dims
    fold into the native batch, the inner dims into its channels (a channels-last view, no
    copy when x is contiguous), and leading 1s raise a 1-dim group to ``rank`` dims.
    """
    sizes = x.shape[2:]
    lead = x.shape[0] * x.shape[1] * math.prod(sizes[:first])
    group = tuple(sizes[first:stop])
    ones = (1,) * (rank - len(group))
    trail = math.prod(sizes[stop:])
    if trail == 1:  # plain contiguous strides, so torch picks its contiguous kernels
        return x.reshape(lead, 1, *ones, *group)
    return x.reshape(lead, *ones, *group, trail).movedim(-1, 1)


def from_native(y, like_shape, first, stop, rank):
    """Undo ``to_native`` on a native result y: back to (B, C, *outer, *pooled group, *inner)."""
    pooled = y.shape[2 + rank - (stop - first):]
    return y.movedim(1, -1).reshape(*like_shape[:2 + first], *pooled, *like_shape[2 + stop:])


def pad_group(values, fill, first, stop, rank):
    """A per-dim tuple's entries for dims [first, stop), led by ``fill`` up to ``rank``."""
    return (fill,) * (rank - (stop - first)) + tuple(values[first:stop])


def chain_indices(inner, step, in_sizes, first, stop):
    """Indices flat over spatial dims [first, N) from a pass over [first, stop).

    inner: indices flat over dims [stop, N) of the tensor this pass pooled (or None when the
    pass is the innermost); step: the pass's indices, flat over dims [first, stop). The pass
    chose, per output, one position of its group; the inner index stored at that position
    completes the N-d index.
    """
    if inner is None:
        return step
    lead = step.shape[0] * step.shape[1] * math.prod(in_sizes[:first])
    group_in = math.prod(in_sizes[first:stop])
    group_out = math.prod(step.shape[2 + first: 2 + stop])
    trail = math.prod(step.shape[2 + stop:])
    chosen = step.reshape(lead, group_out, trail)
    picked = inner.reshape(lead, group_in, trail).gather(1, chosen)
    return (chosen * math.prod(in_sizes[stop:]) + picked).reshape(step.shape)


def max_pool_nd(x, kernel_size, stride, padding, dilation, ceil_mode, return_indices, *,
                native_max_dims=3):
    """``ndops.functional.max_pool_nd`` by separable native max pools (see the module doc)."""
    n = x.dim() - 2
    values, indices = x, None
    for first, stop in dim_groups(n, native_max_dims):
        rank = max(2, stop - first)  # 1-dim groups run as (1, W): max_pool1d lacks int kernels
        native_input = to_native(values, first, stop, rank)
        if rank == 3:  # torch's channels-last max_pool3d indexes all -inf windows differently
            native_input = native_input.contiguous()
        pool = F.max_pool2d if rank == 2 else F.max_pool3d
        result = pool(native_input,
                      pad_group(kernel_size, 1, first, stop, rank),
                      pad_group(stride, 1, first, stop, rank),
                      pad_group(padding, 0, first, stop, rank),
                      pad_group(dilation, 1, first, stop, rank),
                      ceil_mode=ceil_mode, return_indices=return_indices)
        if return_indices:
            result, step = result
            step = from_native(step, values.shape, first, stop, rank)
            indices = chain_indices(indices, step, x.shape[2:], first, stop)
        values = from_native(result, values.shape, first, stop, rank)
    return (values, indices) if return_indices else values


def _window_counts(size, out, k, s, p, count_include_pad, device):
    """Per output position of one dim: how many window taps torch's avg pool divides by."""
    start = torch.arange(out, device=device) * s - p
    end = torch.clamp(start + k, max=size + p)  # a ceil_mode overhang past the padding: no count
    if count_include_pad:
        return end - start
    return end.clamp(max=size) - start.clamp(min=0)


def avg_pool_nd(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override,
                *, native_max_dims=3):
    """``ndops.functional.avg_pool_nd``: separable window sums, then one division.

    Sums come from native avg_pool2d with divisor_override=1 (groups of at most 2 dims:
    avg_pool3d rejects float16 on CPU and inputs smaller than the kernel). The divisor is the
    product of per-dim window counts, or ``divisor_override``. float16/bfloat16 accumulate in
    float32, as torch's kernels do.
    """
    n = x.dim() - 2
    sums = x.float() if x.dtype in _FLOAT_ACCUMULATE else x
    for first, stop in dim_groups(n, min(native_max_dims, 2)):
        result = F.avg_pool2d(to_native(sums, first, stop, 2),
                              pad_group(kernel_size, 1, first, stop, 2),
                              pad_group(stride, 1, first, stop, 2),
                              pad_group(padding, 0, first, stop, 2),
                              ceil_mode=ceil_mode, divisor_override=1)
        sums = from_native(result, sums.shape, first, stop, 2)
    if divisor_override is not None:
        return (sums / divisor_override).to(x.dtype)
    divisor = torch.ones((), dtype=torch.int64, device=x.device)
    for dim in range(n):
        counts = _window_counts(x.shape[2 + dim], sums.shape[2 + dim], kernel_size[dim],
                                stride[dim], padding[dim], count_include_pad, x.device)
        divisor = divisor.unsqueeze(-1) * counts  # outer product over the dims seen so far
    return (sums / divisor.to(sums.dtype)).to(x.dtype)


def max_unpool_nd(x, indices, output_size):
    """``ndops.functional.max_unpool_nd``: zeros with one scatter over each flattened plane."""
    b, c, plane = x.shape[0], x.shape[1], math.prod(x.shape[2:])
    out = x.new_zeros(b, c, math.prod(output_size))
    out = out.scatter(2, indices.reshape(b, c, plane), x.reshape(b, c, plane))
    return out.reshape(b, c, *output_size)
