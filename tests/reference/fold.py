"""Brute-force unfold and fold at any N, from the definitions: loops over channels, taps and
block positions, reading (unfold) or adding (fold) one value at a time."""
import itertools

import torch


def _blocks(size, kernel_size, dilation, padding, stride):
    return [(i + 2 * p - d * (k - 1) - 1) // s + 1
            for i, k, d, p, s in zip(size, kernel_size, dilation, padding, stride)]


def _source(tap, block, kernel_args):
    """Unpadded input position of tap ``tap`` of block ``block``: l * s + k * d - p."""
    dilation, padding, stride = kernel_args
    return tuple(l * s + k * d - p for k, l, d, p, s in zip(tap, block, dilation, padding, stride))


def unfold(x, kernel_size, dilation, padding, stride):
    """(B, C, *size) -> (B, C * prod(k), L); zero where a tap falls in the padding."""
    size = tuple(x.shape[2:])
    blocks = _blocks(size, kernel_size, dilation, padding, stride)
    rows = []
    for c in range(x.shape[1]):
        for tap in itertools.product(*(range(k) for k in kernel_size)):
            row = []
            for block in itertools.product(*(range(b) for b in blocks)):
                pos = _source(tap, block, (dilation, padding, stride))
                if all(0 <= q < s for q, s in zip(pos, size)):
                    row.append(x[(slice(None), c, *pos)])
                else:
                    row.append(torch.zeros(x.shape[0], dtype=x.dtype))
            rows.append(torch.stack(row, dim=1))
    return torch.stack(rows, dim=1)


def fold(cols, output_size, kernel_size, dilation, padding, stride):
    """(B, C * prod(k), L) -> (B, C, *output_size); values at the same position are summed."""
    taps = list(itertools.product(*(range(k) for k in kernel_size)))
    blocks = list(itertools.product(*(range(b) for b in _blocks(output_size, kernel_size,
                                                                  dilation, padding, stride))))
    channels = cols.shape[1] // len(taps)
    out = []
    for c in range(channels):
        sums = {pos: torch.zeros(cols.shape[0], dtype=cols.dtype)
                for pos in itertools.product(*(range(s) for s in output_size))}
        for t, tap in enumerate(taps):
            for l, block in enumerate(blocks):
                pos = _source(tap, block, (dilation, padding, stride))
                if pos in sums:
                    sums[pos] = sums[pos] + cols[:, c * len(taps) + t, l]
        out.append(torch.stack(list(sums.values()), dim=1).reshape(cols.shape[0],
                                                                      *output_size))
    return torch.stack(out, dim=1)
