"""torch.library registrations for conv_nd, conv_transpose_nd and their backward ops
(csrc/cpu/conv.cpp, csrc/cpu/conv_variants.cpp); conv_bias_act_nd's are in conv_bias_act.py."""
import torch


def output_shape(input, weight, stride, padding, dilation):
    """conv_nd's output shape; padding: N entries or N (before, after) pairs."""
    n = weight.dim() - 2
    torch._check(input.dim() == n + 2, lambda: "ndops::conv_nd: input and weight ranks differ")
    torch._check(len(padding) in (n, 2 * n), lambda: "ndops::conv_nd: bad padding length")
    pairs = padding if len(padding) == 2 * n else [p for p in padding for _ in range(2)]
    sizes = [(i + pairs[2 * j] + pairs[2 * j + 1] - d * (k - 1) - 1) // s + 1 for j, (i, k, s, d)
             in enumerate(zip(input.shape[2:], weight.shape[2:], stride, dilation))]
    return [input.shape[0], weight.shape[0], *sizes]


def double_backward_terms(forward, backward, grad, input, weight, grad_grads, needs):
    """The double backward of a conv-like backward (bilinear: grad_input in (grad, weight),
    grad_weight in (grad, input), grad_bias linear in grad), each term the conv or its backward
    with one argument swapped. ``forward(x, w)`` and ``backward(grad, x, w, output_mask)`` are
    the op and its backward with the geometry bound; ``grad_grads`` the gradients of
    (grad_input, grad_weight, grad_bias); ``needs`` says which of (grad, input, weight) want a
    gradient. Returns (d_grad, d_input, d_weight), None where not needed."""
    grad_input_grad, grad_weight_grad, grad_bias_grad = grad_grads
    need_grad, need_input, need_weight = needs
    d_grad = d_input = d_weight = None
    if need_grad:
        d_grad = torch.zeros_like(grad)
        if grad_input_grad is not None:
            d_grad += forward(grad_input_grad, weight)
        if grad_weight_grad is not None:
            d_grad += forward(input, grad_weight_grad)
        if grad_bias_grad is not None:
            d_grad += grad_bias_grad.reshape(1, -1, *[1] * (grad.dim() - 2))
    if need_input and grad_weight_grad is not None:
        d_input = backward(grad, input, grad_weight_grad, [True, False, False])[0]
    if need_weight and grad_input_grad is not None:
        d_weight = backward(grad, grad_input_grad, weight, [False, True, False])[1]
    return d_grad, d_input, d_weight


def conv_double_backward_terms(grad, input, weight, grad_grads, needs, geometry, mode):
    """``double_backward_terms`` of conv_nd; ``geometry``: (stride, padding, dilation, groups)."""
    return double_backward_terms(
        lambda x, w: torch.ops.ndops.conv_nd(x, w, None, *geometry, mode),
        lambda g, x, w, mask: torch.ops.ndops._conv_nd_backward(g, x, w, *geometry, mask, mode),
        grad, input, weight, grad_grads, needs)


def register():
    """Attach the fake kernels and autograd of every conv op."""
    _register_conv()
    _register_transpose()


def _register_conv():

    @torch.library.register_fake("ndops::conv_nd")
    def _(input, weight, bias, stride, padding, dilation, groups, padding_mode="zeros"):
        return input.new_empty(output_shape(input, weight, stride, padding, dilation))

    @torch.library.register_fake("ndops::_conv_nd_backward")
    def _(grad_output, input, weight, stride, padding, dilation, groups, output_mask,
          padding_mode="zeros"):
        torch._check(list(grad_output.shape) ==
                     output_shape(input, weight, stride, padding, dilation),
                     lambda: "ndops::_conv_nd_backward: grad_output does not match the output")
        return (input.new_empty(input.shape) if output_mask[0] else None,
                weight.new_empty(weight.shape) if output_mask[1] else None,
                weight.new_empty(weight.shape[0]) if output_mask[2] else None)

    def setup_conv(ctx, inputs, output):
        input, weight, bias, *geometry = inputs
        ctx.save_for_backward(input, weight)
        ctx.has_bias = bias is not None
        ctx.geometry = geometry[:4]  # stride, padding, dilation, groups
        ctx.padding_mode = geometry[4] if len(geometry) > 4 else "zeros"

    def conv_backward(ctx, grad):
        input, weight = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1],
                ctx.has_bias and ctx.needs_input_grad[2]]
        grads = torch.ops.ndops._conv_nd_backward(grad, input, weight, *ctx.geometry, mask,
                                                  ctx.padding_mode)
        return *grads, None, None, None, None, None

    def setup_conv_backward(ctx, inputs, output):
        grad_output, input, weight, *geometry = inputs
        ctx.save_for_backward(grad_output, input, weight)
        ctx.geometry = geometry[:4]  # stride, padding, dilation, groups
        ctx.padding_mode = geometry[5] if len(geometry) > 5 else "zeros"

    def conv_backward_backward(ctx, *grad_grads):
        grad_output, input, weight = ctx.saved_tensors
        return (*conv_double_backward_terms(grad_output, input, weight, grad_grads,
                                            ctx.needs_input_grad[:3], ctx.geometry,
                                            ctx.padding_mode), *[None] * 6)

    torch.library.register_autograd("ndops::conv_nd", conv_backward, setup_context=setup_conv)
    torch.library.register_autograd("ndops::_conv_nd_backward", conv_backward_backward,
                                    setup_context=setup_conv_backward)


def _transposed_output_shape(input, weight, stride, padding, output_padding, groups, dilation):
    sizes = [(i - 1) * s - 2 * p + d * (k - 1) + q + 1 for i, k, s, p, q, d in
             zip(input.shape[2:], weight.shape[2:], stride, padding, output_padding, dilation)]
    return [input.shape[0], weight.shape[1] * groups, *sizes]


def _register_transpose():
    """Attach the fake kernels and autograd of conv_transpose_nd and its backward."""

    @torch.library.register_fake("ndops::conv_transpose_nd")
    def _(input, weight, bias, stride, padding, output_padding, groups, dilation):
        return input.new_empty(_transposed_output_shape(input, weight, stride, padding,
                                                        output_padding, groups, dilation))

    @torch.library.register_fake("ndops::_conv_transpose_nd_backward")
    def _(grad_output, input, weight, stride, padding, output_padding, groups, dilation,
          output_mask):
        return (input.new_empty(input.shape) if output_mask[0] else None,
                weight.new_empty(weight.shape) if output_mask[1] else None,
                weight.new_empty(weight.shape[1] * groups) if output_mask[2] else None)

    def setup_transpose(ctx, inputs, output):
        input, weight, bias, *geometry = inputs
        ctx.save_for_backward(input, weight)
        ctx.has_bias = bias is not None
        ctx.geometry = geometry  # stride, padding, output_padding, groups, dilation

    def transpose_backward(ctx, grad):
        input, weight = ctx.saved_tensors
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1],
                ctx.has_bias and ctx.needs_input_grad[2]]
        grads = torch.ops.ndops._conv_transpose_nd_backward(grad, input, weight, *ctx.geometry,
                                                            mask)
        return *grads, None, None, None, None, None

    def setup_transpose_backward(ctx, inputs, output):
        grad_output, input, weight, *geometry, _mask = inputs
        ctx.save_for_backward(grad_output, input, weight)
        ctx.geometry = geometry

    def transpose_double_backward(ctx, *grad_grads):
        grad_output, input, weight = ctx.saved_tensors
        backward = torch.ops.ndops._conv_transpose_nd_backward
        return (*double_backward_terms(
            lambda x, w: torch.ops.ndops.conv_transpose_nd(x, w, None, *ctx.geometry),
            lambda g, x, w, mask: backward(g, x, w, *ctx.geometry, mask),
            grad_output, input, weight, grad_grads, ctx.needs_input_grad[:3]), *[None] * 6)

    torch.library.register_autograd("ndops::conv_transpose_nd", transpose_backward,
                                    setup_context=setup_transpose)
    torch.library.register_autograd("ndops::_conv_transpose_nd_backward",
                                    transpose_double_backward,
                                    setup_context=setup_transpose_backward)
