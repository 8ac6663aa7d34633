"""torch.library registrations for batch_norm_act_nd and _batch_norm_act_nd_backward
(csrc/cpu/batch_norm.cpp).

The forward op is functional (torch.library.register_autograd needs that): it returns the
updated running statistics, which ``ndops.functional.batch_norm_act_nd`` copies into the
buffers. Its outputs save_mean, save_invstd and the running statistics are not differentiable
(as in torch's native_batch_norm). The double backward differentiates the same math written in
torch ops; in training mode it treats save_mean and save_invstd as the statistics of ``input``
(recomputed from it, so gradients flow through them), as torch's batchnorm_double_backward does.
"""
import torch

from ..fallback.norm import ACTIVATIONS, apply_activation

_REDUCED_PRECISION = (torch.float16, torch.bfloat16)


def _stats_dtype(dtype):
    return torch.float32 if dtype in _REDUCED_PRECISION else dtype


def _activated(input, weight, bias, mean, invstd, training, eps, activation, negative_slope):
    """act(batch norm of input) from the saved statistics, in torch ops. In training mode mean
    and invstd carry the gradient of the batch statistics of ``input`` (with their saved
    values)."""
    per_channel = (1, -1) + (1,) * (input.dim() - 2)
    x = input.to(mean.dtype)
    if training:
        dims = [0, *range(2, x.dim())]
        batch_mean = x.mean(dims)
        batch_invstd = torch.rsqrt(x.var(dims, correction=0) + eps)
        mean = mean + (batch_mean - batch_mean.detach())
        invstd = invstd + (batch_invstd - batch_invstd.detach())
    z = (x - mean.view(per_channel)) * invstd.view(per_channel)
    if weight is not None:
        z = z * weight.view(per_channel)
    if bias is not None:
        z = z + bias.view(per_channel)
    return apply_activation(z, activation, negative_slope).to(input.dtype)


def register():
    """Attach the fake kernels and autograd of batch_norm_act_nd and its backward."""

    @torch.library.register_fake("ndops::batch_norm_act_nd")
    def _(input, running_mean, running_var, weight, bias, training, momentum, eps, activation,
          negative_slope):
        torch._check(activation in ACTIVATIONS,
                     lambda: f"ndops::batch_norm_act_nd: unknown activation {activation!r}")
        torch._check(input.dim() >= 2, lambda: "ndops::batch_norm_act_nd: input rank < 2")
        channels, stats = input.shape[1], _stats_dtype(input.dtype)
        if running_mean is None:
            running = [input.new_empty((0,), dtype=stats) for _ in range(2)]
        else:
            running = [running_mean.new_empty((channels,)), running_var.new_empty((channels,))]
        return (input.new_empty(input.shape), input.new_empty((channels,), dtype=stats),
                input.new_empty((channels,), dtype=stats), *running)

    @torch.library.register_fake("ndops::_batch_norm_act_nd_backward")
    def _(grad_output, input, weight, bias, save_mean, save_invstd, training, eps, activation,
          negative_slope):
        torch._check(grad_output.shape == input.shape,
                     lambda: "ndops::_batch_norm_act_nd_backward: grad_output/input shapes")
        channels, stats = input.shape[1], _stats_dtype(input.dtype)
        return (input.new_empty(input.shape),
                input.new_empty((channels,), dtype=stats if weight is None else weight.dtype),
                input.new_empty((channels,), dtype=stats if bias is None else bias.dtype))

    def setup_forward(ctx, inputs, output):
        input, _rm, _rv, weight, bias, training, _momentum, eps, activation, slope = inputs
        _out, save_mean, save_invstd, new_mean, new_var = output
        ctx.mark_non_differentiable(save_mean, save_invstd, new_mean, new_var)
        ctx.save_for_backward(input, weight, bias, save_mean, save_invstd)
        ctx.options = (training, eps, activation, slope)

    def forward_backward(ctx, grad, *_non_differentiable):
        input, weight, bias, save_mean, save_invstd = ctx.saved_tensors
        grad_input, grad_weight, grad_bias = torch.ops.ndops._batch_norm_act_nd_backward(
            grad, input, weight, bias, save_mean, save_invstd, *ctx.options)
        needs = ctx.needs_input_grad
        return (grad_input if needs[0] else None, None, None,
                grad_weight if needs[3] else None, grad_bias if needs[4] else None,
                None, None, None, None, None)

    def setup_backward(ctx, inputs, output):
        grad_output, input, weight, bias, save_mean, save_invstd, *options = inputs
        ctx.save_for_backward(grad_output, input, weight, bias, save_mean, save_invstd)
        ctx.options = options

    def backward_backward(ctx, *grads_of_grads):
        if torch.is_grad_enabled():
            raise RuntimeError("ndops::_batch_norm_act_nd_backward: third and higher "
                               "derivatives are not supported (create_graph=True in a double "
                               "backward)")
        grad_output, input, weight, bias, save_mean, save_invstd = ctx.saved_tensors
        training, eps, activation, slope = ctx.options
        with torch.enable_grad():
            # The first derivatives again, as a differentiable function of these leaves.
            leaves = [None if t is None else t.detach().requires_grad_()
                      for t in (grad_output, input, weight, bias)]
            out = _activated(*leaves[1:], save_mean, save_invstd, training, eps, activation,
                             slope)
            given = [(t, g) for t, g in zip(leaves[1:], grads_of_grads) if t is not None]
            first = torch.autograd.grad(out, [t for t, _ in given], leaves[0],
                                        create_graph=True)
            pairs = [(f, g) for f, (_, g) in zip(first, given)
                     if g is not None and f.requires_grad]
            wanted = [t for t, need in zip(leaves, ctx.needs_input_grad)
                      if need and t is not None]
            second = torch.autograd.grad([f for f, _ in pairs], wanted, [g for _, g in pairs],
                                         allow_unused=True) if pairs and wanted else ()
        by_leaf = {id(t): g for t, g in zip(wanted, second)}
        return (*[by_leaf.get(id(t)) for t in leaves], None, None, None, None, None, None)

    torch.library.register_autograd("ndops::batch_norm_act_nd", forward_backward,
                                    setup_context=setup_forward)
    torch.library.register_autograd("ndops::_batch_norm_act_nd_backward", backward_backward,
                                    setup_context=setup_backward)
