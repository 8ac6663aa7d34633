"""The loop-of-conv3d approach users have today (pvjosue/pytorch_convNd, the seed package),
re-implemented for same-run comparisons.

An N-d convolution (N >= 4) is a sum over the taps of the leading spatial dim of (N-1)-d
convolutions, each over every output frame of that dim folded into the batch; the recursion ends
at ``F.conv3d``. The transposed convolution is the adjoint: every input frame goes through an
(N-1)-d transposed convolution per tap, and the results are added into the output frames
``t * stride + tap * dilation`` before the padding is cropped. Zero padding, per-dim stride and
dilation (and output_padding for the transpose); groups = 1.
"""
import torch
import torch.nn.functional as F


def _per_dim(value, n):
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * n


def conv_loop_of_conv3d(x, weight, bias=None, stride=1, padding=0, dilation=1):
    """``F.conv{N}d`` for N >= 3 as nested loops over taps down to ``F.conv3d``."""
    n = x.dim() - 2
    out = _conv(x, weight, _per_dim(stride, n), _per_dim(padding, n), _per_dim(dilation, n))
    return out if bias is None else out + bias.view(1, -1, *([1] * n))


def _conv(x, weight, stride, padding, dilation):
    if x.dim() == 5:
        return F.conv3d(x, weight, None, stride, padding, dilation)
    s, p, d = stride[0], padding[0], dilation[0]
    batch, length = x.shape[0], x.shape[2]
    taps = weight.shape[2]
    x = F.pad(x, (0, 0) * (x.dim() - 3) + (p, p))
    frames_out = (length + 2 * p - d * (taps - 1) - 1) // s + 1
    total = None
    for tap in range(taps):
        frames = x[:, :, tap * d: tap * d + s * (frames_out - 1) + 1: s]  # (B, C, To, ...)
        frames = frames.transpose(1, 2).flatten(0, 1)                        # (B*To, C, ...)
        part = _conv(frames, weight[:, :, tap], stride[1:], padding[1:], dilation[1:])
        total = part if total is None else total + part
    return total.unflatten(0, (batch, frames_out)).transpose(1, 2)


def conv_transpose_loop_of_conv3d(x, weight, bias=None, stride=1, padding=0, output_padding=0,
                                  dilation=1):
    """``F.conv_transpose{N}d`` for N >= 3 as nested loops over taps down to
    ``F.conv_transpose3d``."""
    n = x.dim() - 2
    out = _conv_transpose(x, weight, _per_dim(stride, n), _per_dim(padding, n),
                          _per_dim(output_padding, n), _per_dim(dilation, n))
    return out if bias is None else out + bias.view(1, -1, *([1] * n))


def _conv_transpose(x, weight, stride, padding, output_padding, dilation):
    if x.dim() == 5:
        return F.conv_transpose3d(x, weight, None, stride, padding, output_padding, 1, dilation)
    s, p, d = stride[0], padding[0], dilation[0]
    batch, length = x.shape[0], x.shape[2]
    taps = weight.shape[2]
    frames_out = (length - 1) * s - 2 * p + d * (taps - 1) + output_padding[0] + 1
    frames = x.transpose(1, 2).flatten(0, 1)                                # (B*Ti, C, ...)
    total = None
    for tap in range(taps):
        part = _conv_transpose(frames, weight[:, :, tap], stride[1:], padding[1:],
                               output_padding[1:], dilation[1:])
        part = part.unflatten(0, (batch, length)).transpose(1, 2)           # (B, O, Ti, ...)
        if total is None:  # uncropped output: every position a tap of a frame can reach
            extent = max((length - 1) * s + d * (taps - 1) + 1, p + frames_out)
            total = part.new_zeros(part.shape[:2] + (extent,) + part.shape[3:])
        positions = torch.arange(length, device=x.device) * s + tap * d
        total = total.index_add(2, positions, part)
    return total[:, :, p: p + frames_out]
