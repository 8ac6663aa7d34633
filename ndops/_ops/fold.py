"""torch.library registrations for unfold_nd and fold_nd (csrc/cpu/fold.cpp).

The two ops are linear and each other's adjoint (<unfold(x), y> == <x, fold(y)>), so each
one's backward is the other op, with the same window arguments; double backward follows.
"""
import math

import torch


def _block_counts(size, kernel_size, dilation, padding, stride):
    """Sliding-block positions per dim: (size + 2p - d(k - 1) - 1) // s + 1."""
    return [(i + 2 * p - d * (k - 1) - 1) // s + 1
            for i, k, d, p, s in zip(size, kernel_size, dilation, padding, stride)]


def register():
    """Attach the fake kernels and autograd of unfold_nd and fold_nd."""
    ops = torch.ops.ndops

    @torch.library.register_fake("ndops::unfold_nd")
    def _(input, kernel_size, dilation, padding, stride):
        n = input.dim() - 2
        torch._check(n >= 1 and len(kernel_size) == len(dilation) == len(padding)
                     == len(stride) == n,
                     lambda: "ndops::unfold_nd: one kernel_size/dilation/padding/stride entry "
                             "per spatial dim of a (B, C, *spatial) input")
        blocks = _block_counts(input.shape[2:], kernel_size, dilation, padding, stride)
        return input.new_empty([input.shape[0], input.shape[1] * math.prod(kernel_size),
                                math.prod(blocks)])

    @torch.library.register_fake("ndops::fold_nd")
    def _(input, output_size, kernel_size, dilation, padding, stride):
        taps = math.prod(kernel_size)
        torch._check(input.dim() == 3 and input.shape[1] % taps == 0,
                     lambda: "ndops::fold_nd: input must be (B, C * prod(kernel_size), L)")
        blocks = _block_counts(output_size, kernel_size, dilation, padding, stride)
        torch._check(input.shape[2] == math.prod(blocks),
                     lambda: "ndops::fold_nd: L does not match the number of sliding blocks")
        return input.new_empty([input.shape[0], input.shape[1] // taps, *output_size])

    def setup_unfold(ctx, inputs, output):
        input, *ctx.window = inputs
        ctx.size = list(input.shape[2:])

    def unfold_backward(ctx, grad):
        return ops.fold_nd(grad, ctx.size, *ctx.window), None, None, None, None

    def setup_fold(ctx, inputs, output):
        _input, _output_size, *ctx.window = inputs

    def fold_backward(ctx, grad):
        return ops.unfold_nd(grad, *ctx.window), None, None, None, None, None

    torch.library.register_autograd("ndops::unfold_nd", unfold_backward,
                                    setup_context=setup_unfold)
    torch.library.register_autograd("ndops::fold_nd", fold_backward, setup_context=setup_fold)
