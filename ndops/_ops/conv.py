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

    def conv_backward_backward(ctx, grad_input_grad, grad_weight_grad, grad_bias_grad):
        # The gradients are bilinear: grad_input in (grad_output, weight), grad_weight in
        # (grad_output, input), grad_bias linear in grad_output. Each term of the double
        # backward is therefore a conv or a conv backward with one argument swapped.
        grad_output, input, weight = ctx.saved_tensors
        geometry, mode, needs = ctx.geometry, ctx.padding_mode, ctx.needs_input_grad
        d_grad_output = d_input = d_weight = None
        if needs[0]:
            d_grad_output = torch.zeros_like(grad_output)
            if grad_input_grad is not None:
                d_grad_output += torch.ops.ndops.conv_nd(grad_input_grad, weight, None,
                                                         *geometry, mode)
            if grad_weight_grad is not None:
                d_grad_output += torch.ops.ndops.conv_nd(input, grad_weight_grad, None,
                                                         *geometry, mode)
            if grad_bias_grad is not None:
                d_grad_output += grad_bias_grad.reshape(1, -1, *[1] * (grad_output.dim() - 2))
        if needs[1] and grad_weight_grad is not None:
            d_input = torch.ops.ndops._conv_nd_backward(
                grad_output, input, grad_weight_grad, *geometry, [True, False, False], mode)[0]
        if needs[2] and grad_input_grad is not None:
            d_weight = torch.ops.ndops._conv_nd_backward(
                grad_output, grad_input_grad, weight, *geometry, [False, True, False], mode)[1]
        return d_grad_output, d_input, d_weight, None, None, None, None, None, None

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

    def transpose_double_backward(ctx, grad_input_grad, grad_weight_grad, grad_bias_grad):
        # As for conv_nd: each term is the transposed conv or its backward, one argument
        # swapped (grad_input is a conv of grad_output, grad_weight bilinear in both).
        grad_output, input, weight = ctx.saved_tensors
        geometry, needs = ctx.geometry, ctx.needs_input_grad
        backward = torch.ops.ndops._conv_transpose_nd_backward
        d_grad_output = d_input = d_weight = None
        if needs[0]:
            d_grad_output = torch.zeros_like(grad_output)
            if grad_input_grad is not None:
                d_grad_output += torch.ops.ndops.conv_transpose_nd(grad_input_grad, weight, None,
                                                                   *geometry)
            if grad_weight_grad is not None:
                d_grad_output += torch.ops.ndops.conv_transpose_nd(input, grad_weight_grad,
                                                                   None, *geometry)
            if grad_bias_grad is not None:
                d_grad_output += grad_bias_grad.reshape(1, -1, *[1] * (grad_output.dim() - 2))
        if needs[1] and grad_weight_grad is not None:
            d_input = backward(grad_output, input, grad_weight_grad, *geometry,
                               [True, False, False])[0]
        if needs[2] and grad_input_grad is not None:
            d_weight = backward(grad_output, grad_input_grad, weight, *geometry,
                                [False, True, False])[1]
        return d_grad_output, d_input, d_weight, None, None, None, None, None, None

    torch.library.register_autograd("ndops::conv_transpose_nd", transpose_backward,
                                    setup_context=setup_transpose)
    torch.library.register_autograd("ndops::_conv_transpose_nd_backward",
                                    transpose_double_backward,
                                    setup_context=setup_transpose_backward)
