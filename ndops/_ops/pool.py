"""torch.library registrations for the pooling ops (csrc/cpu/pool.cpp, adaptive_pool.cpp).

Autograd wiring: max pooling (sliding and adaptive) backpropagates with _max_pool_nd_backward,
a scatter-add by index; max_unpool_nd with _max_unpool_nd_backward, the gather by index. Each
is the other's adjoint, so both have double backward. The average pools are linear: the
backward of their backward is the forward again.
"""
import torch


def pooled_size(size, k, s, p, d, ceil_mode):
    """torch's output length of a sliding window over one dim (csrc/common/window.h)."""
    out = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pooled_shape(sizes, kernel_size, stride, padding, dilation, ceil_mode):
    n = len(sizes) - 2
    torch._check(n >= 1 and len(kernel_size) == len(stride) == len(padding) == len(dilation) == n,
                 lambda: "ndops pooling: one kernel_size/stride/padding/dilation entry per "
                         "spatial dim of a (B, C, *spatial) input")
    return [*sizes[:2], *(pooled_size(*a, ceil_mode) for a in
                          zip(sizes[2:], kernel_size, stride, padding, dilation))]


def _indices_like(values, return_indices):
    shape = values.shape if return_indices else (0,)
    return values.new_empty(shape, dtype=torch.int64)


def register():
    """Attach the fake kernels and autograd of every pooling op."""
    ops = torch.ops.ndops

    @torch.library.register_fake("ndops::max_pool_nd")
    def _(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True):
        values = input.new_empty(_pooled_shape(input.shape, kernel_size, stride, padding,
                                               dilation, ceil_mode))
        return values, _indices_like(values, return_indices)

    @torch.library.register_fake("ndops::adaptive_max_pool_nd")
    def _(input, output_size, return_indices=True):
        values = input.new_empty([*input.shape[:2], *output_size])
        return values, _indices_like(values, return_indices)

    @torch.library.register_fake("ndops::avg_pool_nd")
    def _(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override):
        ones = [1] * len(kernel_size)
        return input.new_empty(_pooled_shape(input.shape, kernel_size, stride, padding, ones,
                                             ceil_mode))

    @torch.library.register_fake("ndops::adaptive_avg_pool_nd")
    def _(input, output_size):
        return input.new_empty([*input.shape[:2], *output_size])

    @torch.library.register_fake("ndops::max_unpool_nd")
    def _(input, indices, output_size):
        return input.new_empty([*input.shape[:2], *output_size])

    @torch.library.register_fake("ndops::_max_pool_nd_backward")
    def _(grad_output, indices, input_size):
        return grad_output.new_empty(input_size)

    @torch.library.register_fake("ndops::_avg_pool_nd_backward")
    def _(grad_output, input_size, kernel_size, stride, padding, ceil_mode, count_include_pad,
          divisor_override):
        return grad_output.new_empty(input_size)

    @torch.library.register_fake("ndops::_adaptive_avg_pool_nd_backward")
    def _(grad_output, input_size):
        return grad_output.new_empty(input_size)

    @torch.library.register_fake("ndops::_max_unpool_nd_backward")
    def _(grad_output, indices):
        return grad_output.new_empty(indices.shape)

    _register_max_autograd(ops)
    _register_avg_autograd(ops)


def _register_max_autograd(ops):
    def setup_max(ctx, inputs, output):
        input, *ctx.args = inputs  # the window arguments, then return_indices
        ctx.input_size = list(input.shape)
        # Indices skipped in the forward (return_indices=False; ndops.functional asks for
        # them whenever a gradient may be needed) are recomputed from the saved input.
        ctx.save_for_backward(output[1] if ctx.args[-1] else input)
        # The indices output has no gradient: autograd would otherwise pass zeros of its shape
        # (8 bytes per output element) to the backward, which ignores them.
        ctx.set_materialize_grads(False)

    def max_backward(ctx, grad, forward_op):
        if grad is None:  # no gradient reached the values (grads are not materialized)
            return None, *([None] * len(ctx.args))
        (saved,) = ctx.saved_tensors
        indices = saved if ctx.args[-1] else forward_op(saved, *ctx.args[:-1], True)[1]
        grad_input = ops._max_pool_nd_backward(grad, indices, ctx.input_size)
        return grad_input, *([None] * len(ctx.args))

    torch.library.register_autograd(
        "ndops::max_pool_nd", lambda ctx, grad, _: max_backward(ctx, grad, ops.max_pool_nd),
        setup_context=setup_max)
    torch.library.register_autograd(
        "ndops::adaptive_max_pool_nd",
        lambda ctx, grad, _: max_backward(ctx, grad, ops.adaptive_max_pool_nd),
        setup_context=setup_max)

    def setup_scatter(ctx, inputs, output):
        _values, indices, _size = inputs
        ctx.save_for_backward(indices)

    def scatter_backward(ctx, grad):
        (indices,) = ctx.saved_tensors
        return ops._max_unpool_nd_backward(grad, indices), None, None

    # Both scatter their first input to the flat positions in indices (the max-pool backward
    # into the input plane, max_unpool into the output): the backward of each is the gather.
    for scatter in ("_max_pool_nd_backward", "max_unpool_nd"):
        torch.library.register_autograd(f"ndops::{scatter}", scatter_backward,
                                        setup_context=setup_scatter)

    def setup_gather(ctx, inputs, output):
        grad_output, indices = inputs
        ctx.grad_output_size = list(grad_output.shape)
        ctx.save_for_backward(indices)

    def gather_backward(ctx, grad):
        (indices,) = ctx.saved_tensors
        return ops._max_pool_nd_backward(grad, indices, ctx.grad_output_size), None

    torch.library.register_autograd("ndops::_max_unpool_nd_backward", gather_backward,
                                    setup_context=setup_gather)


def _register_avg_autograd(ops):
    def setup_avg(ctx, inputs, output):
        input, *ctx.args = inputs
        ctx.input_size = list(input.shape)

    def avg_backward(ctx, grad):
        return (ops._avg_pool_nd_backward(grad, ctx.input_size, *ctx.args),
                *([None] * len(ctx.args)))

    torch.library.register_autograd("ndops::avg_pool_nd", avg_backward, setup_context=setup_avg)

    def setup_avg_backward(ctx, inputs, output):
        _grad_output, _input_size, *ctx.args = inputs

    def avg_backward_backward(ctx, grad):
        return (ops.avg_pool_nd(grad, *ctx.args), None, *([None] * len(ctx.args)))

    torch.library.register_autograd("ndops::_avg_pool_nd_backward", avg_backward_backward,
                                    setup_context=setup_avg_backward)

    def setup_adaptive(ctx, inputs, output):
        ctx.input_size = list(inputs[0].shape)

    def adaptive_backward(ctx, grad):
        return ops._adaptive_avg_pool_nd_backward(grad, ctx.input_size), None

    torch.library.register_autograd("ndops::adaptive_avg_pool_nd", adaptive_backward,
                                    setup_context=setup_adaptive)

    def setup_adaptive_backward(ctx, inputs, output):
        ctx.output_size = list(inputs[0].shape[2:])

    def adaptive_backward_backward(ctx, grad):
        return ops.adaptive_avg_pool_nd(grad, ctx.output_size), None

    torch.library.register_autograd("ndops::_adaptive_avg_pool_nd_backward",
                                    adaptive_backward_backward,
                                    setup_context=setup_adaptive_backward)
