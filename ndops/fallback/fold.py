"""Unfold (sliding blocks -> columns) and fold (its adjoint) at any N, in pure PyTorch.

Layout, as torch's 2-D ``F.unfold``/``F.fold``: columns (B, C * prod(k), L), the column index
ordered (c, k0, ..., k_{N-1}) and the block index L row-major over the block positions.
"""
import math

import torch
import torch.nn.functional as F


def block_counts(size, kernel_size, dilation, padding, stride):
    """Sliding-block positions per dim: (size + 2p - d(k - 1) - 1) // s + 1."""
    return tuple((i + 2 * p - d * (k - 1) - 1) // s + 1
                 for i, k, d, p, s in zip(size, kernel_size, dilation, padding, stride))


def unfold_nd(input, kernel_size, dilation, padding, stride):
    """(B, C, *spatial) -> (B, C * prod(kernel_size), L): every block as a column.

    Zero padding, then one strided view per dim (``Tensor.unfold`` takes windows of the dilated
    span, slicing by the dilation keeps the taps), then a single permute + reshape copy.
    """
    n = len(kernel_size)
    batch, channels = input.shape[:2]
    x = input
    if any(padding):
        x = F.pad(x, [p for p in reversed(padding) for _ in range(2)])
    for d in range(n):
        span = dilation[d] * (kernel_size[d] - 1) + 1
        x = x.unfold(2 + d, span, stride[d])  # new last dim: the window of dim d
        if dilation[d] > 1:
            x = x[..., ::dilation[d]]
    # x: (B, C, L_0, ..., L_{N-1}, k_0, ..., k_{N-1})
    blocks = x.shape[2:2 + n]
    x = x.permute(0, 1, *range(2 + n, 2 + 2 * n), *range(2, 2 + n))
    return x.reshape(batch, channels * math.prod(kernel_size), math.prod(blocks))


def fold_nd(input, output_size, kernel_size, dilation, padding, stride):
    """(B, C * prod(kernel_size), L) -> (B, C, *output_size): columns summed into place.

    Every column entry (c, k, l) is added at padded position l * stride + k * dilation, all at
    once by one ``index_add`` over a precomputed flat index; the padding is cropped after.
    """
    batch, columns, length = input.shape
    taps = math.prod(kernel_size)
    channels = columns // taps
    padded = [o + 2 * p for o, p in zip(output_size, padding)]
    blocks = block_counts(output_size, kernel_size, dilation, padding, stride)
    index = _flat_target_index(padded, kernel_size, dilation, stride, blocks, input.device)
    values = input.reshape(batch, channels, taps * length)
    out = input.new_zeros(batch, channels, math.prod(padded)).index_add(2, index, values)
    out = out.view(batch, channels, *padded)
    crop = tuple(slice(p, p + o) for o, p in zip(output_size, padding))
    return out[(slice(None), slice(None), *crop)]


def _flat_target_index(padded, kernel_size, dilation, stride, blocks, device):
    """Flat index into the padded output of every (k_0..k_{N-1}, l_0..l_{N-1}) pair, in the
    columns' order (taps major, block positions minor)."""
    n = len(padded)
    index = torch.zeros((1,) * (2 * n), dtype=torch.long, device=device)
    flat_stride = 1
    for d in reversed(range(n)):
        tap_shape = [1] * (2 * n)
        tap_shape[d] = kernel_size[d]
        block_shape = [1] * (2 * n)
        block_shape[n + d] = blocks[d]
        taps = torch.arange(kernel_size[d], device=device) * dilation[d]
        starts = torch.arange(blocks[d], device=device) * stride[d]
        index = index + (taps.view(tap_shape) + starts.view(block_shape)) * flat_stride
        flat_stride *= padded[d]
    return index.reshape(-1)
