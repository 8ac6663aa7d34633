"""Adaptive avg/max pooling at any N, exact, from torch's native adaptive 2-D/3-D pools.

Output position i of a dim pools input [floor(i * in / out), ceil((i + 1) * in / out)): the
window of each dim depends on that dim alone, so the N-d window is a box and the pools are
separable like the sliding-window ones in ``pool`` (whose group helpers this module shares).
The mean of per-dim means over a box is its mean: every element weighs 1 / (product of the
per-dim window lengths) either way.
"""
import torch
import torch.nn.functional as F

from .pool import chain_indices, dim_groups, from_native, pad_group, to_native

_FLOAT_ACCUMULATE = (torch.float16, torch.bfloat16)


def _native_adaptive(kind, rank):
    return getattr(F, f"adaptive_{kind}_pool{rank}d")


def adaptive_avg_pool_nd(x, output_size, *, native_max_dims=3):
    """``ndops.functional.adaptive_avg_pool_nd`` by separable native adaptive average pools."""
    values = x.float() if x.dtype in _FLOAT_ACCUMULATE else x
    for first, stop in dim_groups(x.dim() - 2, native_max_dims):
        rank = max(2, stop - first)
        size = pad_group(output_size, 1, first, stop, rank)
        result = _native_adaptive("avg", rank)(to_native(values, first, stop, rank), size)
        values = from_native(result, values.shape, first, stop, rank)
    return values.to(x.dtype)


def adaptive_max_pool_nd(x, output_size, return_indices, *, native_max_dims=3):
    """``ndops.functional.adaptive_max_pool_nd`` by separable native adaptive max pools."""
    values, indices = x, None
    for first, stop in dim_groups(x.dim() - 2, native_max_dims):
        rank = max(2, stop - first)
        size = pad_group(output_size, 1, first, stop, rank)
        result, step = _native_adaptive("max", rank)(to_native(values, first, stop, rank),
                                                     size, return_indices=True)
        if return_indices:
            step = from_native(step, values.shape, first, stop, rank)
            indices = chain_indices(indices, step, x.shape[2:], first, stop)
        values = from_native(result, values.shape, first, stop, rank)
    return (values, indices) if return_indices else values
