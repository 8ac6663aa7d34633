"""torch.library registrations for conv_bias_act_nd and its backward (csrc/cpu/conv_variants.cpp).

conv_bias_act_nd returns (output, pre_activation); the pre-activation z is kept only where the
activation's derivative needs it (else an empty tensor, the output telling act' apart). Both
outputs are differentiable; the double backward is written with torch ops from act' and act''.
"""
import math

import torch

from .conv import conv_double_backward_terms, output_shape


def _keeps_pre_activation(activation, negative_slope):
    return activation in ("silu", "gelu", "gelu_tanh") or (
        activation == "leaky_relu" and negative_slope < 0)


def _activation_derivatives(activation, negative_slope, z):
    """(act'(z), act''(z)) elementwise; act'' is None where it vanishes (piecewise linear)."""
    if activation == "none":
        return torch.ones_like(z), None
    if activation == "relu":
        return (z > 0).to(z.dtype), None
    if activation == "leaky_relu":
        return torch.where(z > 0, torch.ones_like(z), torch.full_like(z, negative_slope)), None
    if activation == "silu":
        s = torch.sigmoid(z)
        return s * (1 + z * (1 - s)), s * (1 - s) * (2 + z * (1 - 2 * s))
    if activation == "gelu":  # z * Phi(z): Phi + z phi, then phi * (2 - z^2)
        cdf = 0.5 * (1 + torch.erf(z * math.sqrt(0.5)))
        pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        return cdf + z * pdf, pdf * (2 - z * z)
    # gelu_tanh: 0.5 z (1 + t), t = tanh(u), u = k (z + c z^3)
    k, c = math.sqrt(2 / math.pi), 0.044715
    t = torch.tanh(k * (z + c * z ** 3))
    du = k * (1 + 3 * c * z * z)
    dt = (1 - t * t) * du
    return 0.5 * (1 + t) + 0.5 * z * dt, dt + 0.5 * z * (-2 * t * dt * du + (1 - t * t) * 6 * k * c * z)


def register():
    """Attach the fake kernels and autograd of conv_bias_act_nd and its backward."""

    @torch.library.register_fake("ndops::conv_bias_act_nd")
    def _(input, weight, bias, stride, padding, dilation, groups, activation,
          negative_slope=0.01, padding_mode="zeros"):
        shape = output_shape(input, weight, stride, padding, dilation)
        keep = _keeps_pre_activation(activation, negative_slope)
        return input.new_empty(shape), input.new_empty(shape if keep else [0])

    @torch.library.register_fake("ndops::_conv_bias_act_nd_backward")
    def _(grad_output, output, pre_activation, input, weight, stride, padding, dilation, groups,
          activation, negative_slope, output_mask, padding_mode="zeros"):
        return (input.new_empty(input.shape) if output_mask[0] else None,
                weight.new_empty(weight.shape) if output_mask[1] else None,
                weight.new_empty(weight.shape[0]) if output_mask[2] else None)

    def setup_forward(ctx, inputs, output):
        input, weight, bias, stride, padding, dilation, groups, activation, *rest = inputs
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(input, weight, *output)
        ctx.has_bias = bias is not None
        ctx.arguments = (stride, padding, dilation, groups, activation,
                         rest[0] if rest else 0.01)
        ctx.padding_mode = rest[1] if len(rest) > 1 else "zeros"

    def forward_backward(ctx, grad, grad_pre_activation):
        input, weight, output, pre_activation = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.arguments[:4]
        mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1],
                ctx.has_bias and ctx.needs_input_grad[2]]
        grads = [None, None, None]
        if grad is not None:
            grads = list(torch.ops.ndops._conv_bias_act_nd_backward(
                grad, output, pre_activation, input, weight, *ctx.arguments, mask,
                ctx.padding_mode))
        if grad_pre_activation is not None and pre_activation.numel() > 0:
            # z itself was used: its gradient goes through the conv alone.
            extra = torch.ops.ndops._conv_nd_backward(grad_pre_activation, input, weight, stride,
                                                      padding, dilation, groups, mask,
                                                      ctx.padding_mode)
            grads = [e if g is None else (g if e is None else g + e)
                     for g, e in zip(grads, extra)]
        return *grads, None, None, None, None, None, None, None

    def setup_backward(ctx, inputs, output):
        grad_output, out, pre_activation, input, weight, stride, padding, dilation, groups, \
            activation, negative_slope, _mask, *mode = inputs
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(grad_output, out, pre_activation, input, weight)
        ctx.geometry = (stride, padding, dilation, groups)
        ctx.activation = (activation, negative_slope)
        ctx.padding_mode = mode[0] if mode else "zeros"

    def backward_backward(ctx, grad_input_grad, grad_weight_grad, grad_bias_grad):
        # The backward is conv_backward(gz) with gz = grad_output * act'(z): bilinear in
        # (gz, weight) and (gz, input) as for conv_nd, and gz depends on z through act''.
        grad_output, out, pre_activation, input, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        z = pre_activation if pre_activation.numel() else out
        first, second = _activation_derivatives(*ctx.activation, z)
        grad_z = grad_output * first
        # dual: d <grads of grads, backward> / d grad_z
        dual, d_input, d_weight = conv_double_backward_terms(
            grad_z, input, weight, (grad_input_grad, grad_weight_grad, grad_bias_grad),
            (needs[0] or needs[2], needs[3], needs[4]), ctx.geometry, ctx.padding_mode)
        d_grad_output = dual * first if needs[0] else None
        d_pre = (grad_output * dual * second if needs[2] and second is not None
                 and pre_activation.numel() else None)
        return (d_grad_output, None, d_pre, d_input, d_weight, *[None] * 8)

    torch.library.register_autograd("ndops::conv_bias_act_nd", forward_backward,
                                    setup_context=setup_forward)
    torch.library.register_autograd("ndops::_conv_bias_act_nd_backward", backward_backward,
                                    setup_context=setup_backward)
