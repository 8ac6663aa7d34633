"""Brute-force float64 padding, written from the modes' definitions (tiny sizes only).

Along each padded dim the list of input coordinates that the output copies is built the way
the modes are described, by concatenating pieces of the coordinate range:
  reflect / replicate / constant: pad first (mirrored / edge / "none" pieces on each side for
  the positive pads), then crop the negative pads off the ends;
  circular (as torch): crop the negative pads first, then wrap the positive pads around the
  cropped range (its last `left` coordinates before it, its first `right` ones after it).
Then every output position is visited and copies the input at its per-dim coordinates, or
the fill value when one is "none". The backward visits every output position and adds its
gradient to that input element.
"""
import itertools

import numpy as np
import torch


def _coordinates(mode, size, left, right):
    """Input coordinate (or None) of every output coordinate along one padded dim."""
    if mode == "circular":
        kept = list(range(size))[max(-left, 0):size - max(-right, 0)]
        before = kept[len(kept) - left:] if left > 0 else []
        after = kept[:right] if right > 0 else []
        return before + kept + after
    if mode == "constant":
        before, after = [None] * max(left, 0), [None] * max(right, 0)
    elif mode == "replicate":
        before, after = [0] * max(left, 0), [size - 1] * max(right, 0)
    else:  # reflect: mirror images that skip the edge element
        before = [left - k for k in range(max(left, 0))]
        after = [size - 2 - k for k in range(max(right, 0))]
    coords = before + list(range(size)) + after
    return coords[max(-left, 0):len(coords) - max(-right, 0)]


def _maps(shape, pad, mode):
    n = len(pad) // 2
    lead = len(shape) - n
    maps = [[(i,) for i in range(s)] for s in shape[:lead]]
    for d in range(n):
        left, right = pad[2 * (n - 1 - d)], pad[2 * (n - 1 - d) + 1]
        maps.append([(c,) if c is not None else None
                     for c in _coordinates(mode, shape[lead + d], left, right)])
    return maps


def _positions(maps):
    """(output index, input index or None) for every output position."""
    for out_index in itertools.product(*(range(len(m)) for m in maps)):
        picked = [maps[d][i] for d, i in enumerate(out_index)]
        yield out_index, None if None in picked else tuple(p[0] for p in picked)


def pad(x, pad, mode="constant", value=0.0):
    """Forward: ``x`` is any tensor of rank >= len(pad) // 2; returns float64."""
    src = x.detach().double().numpy()
    maps = _maps(src.shape, pad, mode)
    out = np.empty([len(m) for m in maps])
    for out_index, in_index in _positions(maps):
        out[out_index] = value if in_index is None else src[in_index]
    return torch.from_numpy(out)


def pad_backward(grad_output, input_shape, pad, mode="constant"):
    """Gradient w.r.t. the input of ``pad``, given the gradient of its output."""
    g = grad_output.detach().double().numpy()
    grad_input = np.zeros(tuple(input_shape))
    for out_index, in_index in _positions(_maps(tuple(input_shape), pad, mode)):
        if in_index is not None:
            grad_input[in_index] += g[out_index]
    return torch.from_numpy(grad_input)
