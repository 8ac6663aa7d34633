"""Batch normalization (and batch norm + activation) at any N from its formula, in pure PyTorch
(an independent path next to torch's own ``F.batch_norm``, which already accepts any rank)."""
import torch
import torch.nn.functional as F

_REDUCED_PRECISION = (torch.float16, torch.bfloat16)

# The activations batch_norm_act_nd fuses, by name.
ACTIVATIONS = ("none", "relu", "leaky_relu", "silu", "gelu", "gelu_tanh")


def apply_activation(z, activation, negative_slope):
    """``activation`` (a name in ACTIVATIONS) of ``z``, with torch's own functions."""
    if activation == "relu":
        return F.relu(z)
    if activation == "leaky_relu":
        return F.leaky_relu(z, negative_slope)
    if activation == "silu":
        return F.silu(z)
    if activation == "gelu":
        return F.gelu(z)
    if activation == "gelu_tanh":
        return F.gelu(z, approximate="tanh")
    return z


def _normalize(input, running_mean, running_var, weight, bias, training, momentum, eps):
    """Batch norm of ``input`` in its compute dtype (float32 for half/bfloat16)."""
    x = input.float() if input.dtype in _REDUCED_PRECISION else input
    reduce_dims = [0, *range(2, x.dim())]
    per_channel = (1, -1) + (1,) * (x.dim() - 2)
    if training:
        mean = x.mean(reduce_dims)
        centered = x - mean.view(per_channel)
        var = (centered * centered).mean(reduce_dims)
        if running_mean is not None and x.numel() > 0:
            count = x.numel() // x.shape[1]
            with torch.no_grad():
                unbiased_var = var * (count / (count - 1))
                running_mean.mul_(1 - momentum).add_(momentum * mean.to(running_mean.dtype))
                running_var.mul_(1 - momentum).add_(momentum * unbiased_var.to(running_var.dtype))
    else:
        centered = x - running_mean.view(per_channel)
        var = running_var
    out = centered * torch.rsqrt(var.view(per_channel) + eps)
    if weight is not None:
        out = out * weight.view(per_channel)
    if bias is not None:
        out = out + bias.view(per_channel)
    return out


def batch_norm_nd(input, running_mean, running_var, weight, bias, training, momentum, eps):
    """Normalize ``input`` (B, C, *spatial) per channel, statistics over all other dims.

    training: the batch's mean and biased variance normalize, and the running statistics (when
    given) become (1 - momentum) * running + momentum * batch, with the UNBIASED variance
    (n / (n - 1) times the biased one, n = B * prod(spatial)), as torch does; not updated for an
    empty input. Eval: the running statistics normalize. Half/bfloat16 inputs are computed in
    float32, like torch's kernels, and the output has the input's dtype.
    """
    return _normalize(input, running_mean, running_var, weight, bias, training, momentum,
                      eps).to(input.dtype)


def batch_norm_act_nd(input, running_mean, running_var, weight, bias, training, momentum, eps,
                      activation, negative_slope):
    """``apply_activation(batch_norm_nd(...))``, the activation applied before rounding a
    half/bfloat16 result (once, like the fused kernel)."""
    out = _normalize(input, running_mean, running_var, weight, bias, training, momentum, eps)
    return apply_activation(out, activation, negative_slope).to(input.dtype)
