"""Brute-force float64 convolution and transposed convolution, from the definitions.

conv (padding ``p_left`` per dim, zeros outside the input):
    out[b, o, t] = bias[o] + sum over taps k and the channels c of o's group of
                   x[b, c, t*s + k*d - p_left] * w[o, c - first channel of the group, k]
conv_transpose (every input position i and tap k adds into one output position):
    out[b, o, i*s + k*d - p] += x[b, c, i] * w[c, o - first channel of the group, k]
    (dropped when that position is outside the output), plus bias[o] everywhere.

Loops run over output (or input) positions, taps and groups; only batch and channels are
vectorized (a matrix product per position and tap). Given ``grad_output`` G, the gradients of
sum(out * G) are accumulated term by term beside the forward sum: each term y += x * w adds
G * w to x's gradient and G * x to w's.
"""
import itertools

import numpy as np
import torch


def _numpy(t):
    return None if t is None else t.detach().cpu().double().numpy()


def _torch(*arrays):
    return tuple(None if a is None else torch.from_numpy(a) for a in arrays)


def _per_dim(value, n):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def _left_padding(padding, kernel, dilation, n):
    """The zeros before each dim; 'same' adds d*(k-1) zeros, the smaller half first."""
    if padding == "valid":
        return (0,) * n, (0,) * n
    if padding == "same":
        total = [d * (k - 1) for k, d in zip(kernel, dilation)]
        return tuple(t // 2 for t in total), tuple(t - t // 2 for t in total)
    padding = _per_dim(padding, n)
    return padding, padding


def conv_nd(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1, grad_output=None):
    """Output (and, given grad_output, the input/weight/bias gradients) of an N-d conv."""
    x, w, bias, grad = _numpy(x), _numpy(w), _numpy(bias), _numpy(grad_output)
    n = w.ndim - 2
    kernel, in_size = w.shape[2:], x.shape[2:]
    stride, dilation = _per_dim(stride, n), _per_dim(dilation, n)
    left, right = _left_padding(padding, kernel, dilation, n)
    out_size = [(i + a + b - d * (k - 1) - 1) // s + 1 for i, a, b, d, k, s in
                zip(in_size, left, right, dilation, kernel, stride)]
    batch, out_channels = x.shape[0], w.shape[0]
    cin_g, cout_g = w.shape[1], out_channels // groups
    out = np.zeros((batch, out_channels, *out_size))
    gx, gw = np.zeros_like(x), np.zeros_like(w)
    for t in itertools.product(*map(range, out_size)):
        for k in itertools.product(*map(range, kernel)):
            u = tuple(ti * s + ki * d - p for ti, ki, s, d, p in
                      zip(t, k, stride, dilation, left))
            if not all(0 <= ui < size for ui, size in zip(u, in_size)):
                continue  # a padding zero
            for g in range(groups):
                outs, ins = slice(g * cout_g, (g + 1) * cout_g), slice(g * cin_g, (g + 1) * cin_g)
                xs, ws = x[(slice(None), ins) + u], w[(outs, slice(None)) + k]  # (B, c), (o, c)
                out[(slice(None), outs) + t] += xs @ ws.T
                if grad is not None:
                    gs = grad[(slice(None), outs) + t]  # (B, o)
                    gx[(slice(None), ins) + u] += gs @ ws
                    gw[(outs, slice(None)) + k] += gs.T @ xs
    return _finish(out, bias, grad, gx, gw, n)


def conv_transpose_nd(x, w, bias=None, stride=1, padding=0, output_padding=0, groups=1,
                      dilation=1, grad_output=None):
    """Output (and, given grad_output, the gradients) of an N-d transposed conv."""
    x, w, bias, grad = _numpy(x), _numpy(w), _numpy(bias), _numpy(grad_output)
    n = w.ndim - 2
    kernel, in_size = w.shape[2:], x.shape[2:]
    stride, padding = _per_dim(stride, n), _per_dim(padding, n)
    output_padding, dilation = _per_dim(output_padding, n), _per_dim(dilation, n)
    out_size = [(i - 1) * s - 2 * p + d * (k - 1) + q + 1 for i, s, p, d, k, q in
                zip(in_size, stride, padding, dilation, kernel, output_padding)]
    batch, cout_g = x.shape[0], w.shape[1]
    cin_g = w.shape[0] // groups
    out = np.zeros((batch, cout_g * groups, *out_size))
    gx, gw = np.zeros_like(x), np.zeros_like(w)
    for i in itertools.product(*map(range, in_size)):
        for k in itertools.product(*map(range, kernel)):
            t = tuple(ii * s + ki * d - p for ii, ki, s, d, p in
                      zip(i, k, stride, dilation, padding))
            if not all(0 <= ti < size for ti, size in zip(t, out_size)):
                continue  # falls outside the output
            for g in range(groups):
                outs, ins = slice(g * cout_g, (g + 1) * cout_g), slice(g * cin_g, (g + 1) * cin_g)
                xs, ws = x[(slice(None), ins) + i], w[(ins, slice(None)) + k]  # (B, c), (c, o)
                out[(slice(None), outs) + t] += xs @ ws
                if grad is not None:
                    gs = grad[(slice(None), outs) + t]  # (B, o)
                    gx[(slice(None), ins) + i] += gs @ ws.T
                    gw[(ins, slice(None)) + k] += xs.T @ gs
    return _finish(out, bias, grad, gx, gw, n)


def _finish(out, bias, grad, gx, gw, n):
    """Add the bias; return out, or (out, grad_input, grad_weight, grad_bias) given grad."""
    if bias is not None:
        out += bias.reshape(-1, *[1] * n)
    if grad is None:
        return _torch(out)[0]
    grad_bias = None if bias is None else grad.sum(axis=(0, *range(2, grad.ndim)))
    return _torch(out, gx, gw, grad_bias)
