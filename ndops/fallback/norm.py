"""Batch normalization at any N from its formula, in pure PyTorch (an independent path next to
torch's own ``F.batch_norm``, which already accepts any rank)."""
import torch

_REDUCED_PRECISION = (torch.float16, torch.bfloat16)


def batch_norm_nd(input, running_mean, running_var, weight, bias, training, momentum, eps):
    """Normalize ``input`` (B, C, *spatial) per channel, statistics over all other dims.

    training: the batch's mean and biased variance normalize, and the running statistics (when
    given) become (1 - momentum) * running + momentum * batch, with the UNBIASED variance
    (n / (n - 1) times the biased one, n = B * prod(spatial)), as torch does; not updated for an
    empty input. Eval: the running statistics normalize. Half/bfloat16 inputs are computed in
    float32, like torch's kernels, and the output has the input's dtype.
    """
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
    return out.to(input.dtype)
