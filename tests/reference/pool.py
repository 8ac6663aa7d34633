"""Brute-force pooling references in float64, written from the definitions (tiny sizes only).

Every op loops over the output positions of each (b, c) plane and over the taps of the N-d
window, in row-major order. Windows, from torch's documentation:
- a window starts at o * stride - padding and has taps start + j * dilation, j < kernel;
- without ceil_mode a window must fit inside the padded input; with ceil_mode it may reach
  past it by less than one stride, but must start before the end of the input;
- adaptive: output i of a dim covers input [floor(i * in / out), ceil((i + 1) * in / out)).
Max: the first tap holding the maximum wins, but a NaN tap always takes over (so the last NaN
of a window wins), as in torch's CPU kernels. Results are built from the input with
differentiable torch ops (gather, matmul), so autograd gives the reference gradients.
"""
import itertools
import math

import torch


def window_starts(size, k, s, p, d, ceil_mode):
    """Start positions of the windows along one dim (one per output position)."""
    reach = d * (k - 1) + 1
    padded_end = size + p  # one past the last padded position
    starts, o = [], 0
    while True:
        start = o * s - p
        overhang = start + reach - padded_end
        if overhang > 0 and not (ceil_mode and overhang < s and start < size):
            return starts
        starts.append(start)
        o += 1


def _taps(starts, k, d):
    """Every (output position, list of N-d taps) in row-major order of both."""
    for out_pos in itertools.product(*(range(len(w)) for w in starts)):
        taps = itertools.product(*(
            [w[o] + j * dj for j in range(kj)] for w, o, kj, dj in zip(starts, out_pos, k, d)))
        yield out_pos, list(taps)


def _flat(pos, sizes):
    index = 0
    for c, size in zip(pos, sizes):
        index = index * size + c
    return index


def _inside(pos, sizes):
    return all(0 <= c < size for c, size in zip(pos, sizes))


def _argmax(plane, taps, sizes):
    """Flat index of the winning tap among those inside the input."""
    best, best_index = None, None
    for tap in taps:
        if not _inside(tap, sizes):
            continue
        index = _flat(tap, sizes)
        value = plane[index]
        if best is None or value > best or math.isnan(value):
            best, best_index = value, index
    return best_index


def _max_by_index(x, sizes, out_shape, windows):
    """Values and flat indices of the per-window argmax; windows: [(out_pos, taps)]."""
    b, c = x.shape[:2]
    flat = x.reshape(b, c, -1)
    planes = flat.detach().tolist()
    index = torch.tensor([[[_argmax(planes[i][j], taps, sizes) for _, taps in windows]
                           for j in range(c)] for i in range(b)], dtype=torch.int64)
    index = index.reshape(b, c, -1)
    values = flat.gather(2, index)
    return values.reshape(b, c, *out_shape), index.reshape(b, c, *out_shape)


def max_pool(x, kernel_size, stride, padding, dilation, ceil_mode):
    """(values, flat indices) of N-d max pooling of x (B, C, *spatial); per-dim tuples."""
    sizes = tuple(x.shape[2:])
    starts = [window_starts(*a, ceil_mode)
              for a in zip(sizes, kernel_size, stride, padding, dilation)]
    windows = list(_taps(starts, kernel_size, dilation))
    return _max_by_index(x, sizes, [len(w) for w in starts], windows)


def _apply_weights(x, out_shape, weights):
    """x's planes times a dense (out positions, in positions) matrix."""
    b, c = x.shape[:2]
    matrix = torch.tensor(weights, dtype=x.dtype)
    return (x.reshape(b, c, -1) @ matrix.T).reshape(b, c, *out_shape)


def avg_pool(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """N-d average pooling of x (B, C, *spatial); per-dim tuples."""
    sizes = tuple(x.shape[2:])
    ones = (1,) * len(sizes)
    starts = [window_starts(*a, 1, ceil_mode) for a in zip(sizes, kernel_size, stride, padding)]
    out_shape = [len(w) for w in starts]
    weights = []
    for _, taps in _taps(starts, kernel_size, ones):
        inside = [t for t in taps if _inside(t, sizes)]
        if divisor_override is not None:
            divisor = divisor_override
        elif count_include_pad:  # taps in the padded input; a ceil_mode overhang is no tap
            divisor = sum(all(-p <= t_d < size + p for t_d, size, p in zip(t, sizes, padding))
                          for t in taps)
        else:
            divisor = len(inside)
        row = [0.0] * math.prod(sizes)
        for t in inside:
            row[_flat(t, sizes)] += 1.0 / divisor
        weights.append(row)
    return _apply_weights(x, out_shape, weights)


def _adaptive_windows(sizes, output_size):
    ranges = [[range(i * size // out, -(-(i + 1) * size // out)) for i in range(out)]
              for size, out in zip(sizes, output_size)]
    for out_pos in itertools.product(*(range(out) for out in output_size)):
        yield out_pos, list(itertools.product(*(r[o] for r, o in zip(ranges, out_pos))))


def adaptive_avg_pool(x, output_size):
    sizes = tuple(x.shape[2:])
    weights = []
    for _, taps in _adaptive_windows(sizes, output_size):
        row = [0.0] * math.prod(sizes)
        for t in taps:
            row[_flat(t, sizes)] += 1.0 / len(taps)
        weights.append(row)
    return _apply_weights(x, output_size, weights)


def adaptive_max_pool(x, output_size):
    """(values, flat indices) of N-d adaptive max pooling."""
    sizes = tuple(x.shape[2:])
    return _max_by_index(x, sizes, output_size, list(_adaptive_windows(sizes, output_size)))


def max_unpool(x, indices, output_size):
    """Zeros of (B, C, *output_size) with x's values written at their flat indices, in order."""
    b, c = x.shape[:2]
    plane = math.prod(output_size)
    flat_x = x.reshape(b, c, -1)
    source = [[[-1] * plane for _ in range(c)] for _ in range(b)]
    for i, j in itertools.product(range(b), range(c)):
        for position, target in enumerate(indices[i, j].reshape(-1).tolist()):
            source[i][j][target] = position  # a later write replaces an earlier one
    source = torch.tensor(source, dtype=torch.int64)
    picked = flat_x.gather(2, source.clamp(min=0))
    out = torch.where(source >= 0, picked, torch.zeros((), dtype=x.dtype))
    return out.reshape(b, c, *output_size)
