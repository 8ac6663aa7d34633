"""Brute-force interpolation (torch's F.interpolate rules) at any N, from the definitions.

For every output position the source coordinate of each dim is computed, then the N-d weights
(the 2^N corners for linear, the window of taps for antialias and area, one tap for nearest) are
written into a dense (output positions x input positions) float64 matrix; the result is that
matrix applied to the flattened input, so torch autograd gives the reference gradients.
"""
import itertools
import math

import numpy as np
import torch


def _ratio(in_size, out_size, scale, align_corners):
    """ATen's area_pixel_compute_scale: input pixels per output pixel."""
    if align_corners:
        return (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    return 1.0 / scale if scale else in_size / out_size


def _linear_taps(i, in_size, out_size, scale, align_corners):
    """[(input index, weight)] of output index ``i`` along one dim (2 taps)."""
    ratio = _ratio(in_size, out_size, scale, align_corners)
    src = ratio * i if align_corners else max(ratio * (i + 0.5) - 0.5, 0.0)
    left = min(math.floor(src), in_size - 1)
    right = left + 1 if left < in_size - 1 else left
    lam = min(max(src - left, 0.0), 1.0)
    return [(left, 1.0 - lam), (right, lam)]


def _antialias_taps(i, in_size, out_size, scale, align_corners):
    """Triangle filter stretched by the downscaling ratio, normalized (Pillow's / torch's)."""
    ratio = _ratio(in_size, out_size, scale, align_corners)
    support = ratio if ratio >= 1.0 else 1.0
    inv = 1.0 / ratio if ratio >= 1.0 else 1.0
    center = ratio * (i + 0.5)
    lo = max(int(center - support + 0.5), 0)
    hi = min(int(center + support + 0.5), in_size)
    hi = min(hi, lo + 2 * math.ceil(support) + 1)
    taps = [(j, max(0.0, 1.0 - abs((j - center + 0.5) * inv))) for j in range(lo, hi)]
    total = sum(w for _, w in taps)
    return [(j, w / total) for j, w in taps] if total else taps


def _nearest_taps(i, in_size, out_size, scale, exact):
    ratio = _ratio(in_size, out_size, scale, False)
    if exact:
        src = max(ratio * (i + 0.5) - 0.5, 0.0) + 0.5
    else:
        src = ratio * i
    # torch floors in float32 (floorf)
    return [(min(int(np.floor(np.float32(src))), in_size - 1), 1.0)]


def _area_taps(i, in_size, out_size):
    """Adaptive average pooling: the window [floor(i*in/out), ceil((i+1)*in/out))."""
    lo = (i * in_size) // out_size
    hi = -((-(i + 1) * in_size) // out_size)
    return [(j, 1.0 / (hi - lo)) for j in range(lo, hi)]


def interpolation_matrix(in_size, out_size, mode, scales=None, align_corners=False,
                         antialias=False):
    """Dense (prod(out_size), prod(in_size)) matrix of the N-d interpolation weights."""
    n = len(in_size)
    scales = scales or (None,) * n
    matrix = np.zeros((math.prod(out_size), math.prod(in_size)))
    for out_flat, out_pos in enumerate(itertools.product(*(range(s) for s in out_size))):
        per_dim = []
        for d, i in enumerate(out_pos):
            args = (i, in_size[d], out_size[d])
            if in_size[d] == out_size[d] and mode not in ("nearest", "nearest-exact"):
                taps = [(i, 1.0)]  # torch copies such a dim, whatever the scale factor
            elif mode in ("nearest", "nearest-exact"):
                taps = _nearest_taps(*args, scales[d], mode == "nearest-exact")
            elif mode == "area":
                taps = _area_taps(*args)
            elif antialias:
                taps = _antialias_taps(*args, scales[d], align_corners)
            else:
                taps = _linear_taps(*args, scales[d], align_corners)
            per_dim.append(taps)
        # every combination of one tap per dim: the 2^N corners for linear
        for corner in itertools.product(*per_dim):
            weight = math.prod(w for _, w in corner)
            in_flat = np.ravel_multi_index(tuple(j for j, _ in corner), in_size)
            matrix[out_flat, in_flat] += weight
    return matrix


def interpolate(x, output_size, mode, scales=None, align_corners=False, antialias=False):
    """Reference interpolation of x (B, C, *in) to (B, C, *output_size), float64."""
    in_size = tuple(x.shape[2:])
    matrix = torch.from_numpy(interpolation_matrix(in_size, tuple(output_size), mode, scales,
                                                   align_corners, antialias))
    flat = x.reshape(x.shape[0] * x.shape[1], -1).to(torch.float64)
    return (flat @ matrix.T).reshape(*x.shape[:2], *output_size)
