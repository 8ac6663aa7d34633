"""Brute-force batch normalization at any N, from the formula, one channel at a time."""
import torch


def batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps):
    """Returns (output, new running_mean, new running_var); the inputs are not modified.

    Per channel c, over its n = B * prod(spatial) values v: training uses mean = sum(v) / n and
    var = sum((v - mean)^2) / n, and moves the running stats toward mean and the unbiased
    sum((v - mean)^2) / (n - 1) by ``momentum``; eval uses the running stats.
    y = (v - mean) / sqrt(var + eps) * weight[c] + bias[c].
    """
    channels = x.shape[1]
    outputs = []
    new_mean = None if running_mean is None else running_mean.clone()
    new_var = None if running_var is None else running_var.clone()
    for c in range(channels):
        values = x[:, c]
        n = values.numel()
        if training:
            mean = values.sum() / n
            squares = ((values - mean) ** 2).sum()
            var = squares / n
            if new_mean is not None and n > 0:
                new_mean[c] = (1 - momentum) * running_mean[c] + momentum * mean.detach()
                new_var[c] = (1 - momentum) * running_var[c] + momentum * squares.detach() / (n - 1)
        else:
            mean, var = running_mean[c], running_var[c]
        y = (values - mean) / torch.sqrt(var + eps)
        if weight is not None:
            y = y * weight[c]
        if bias is not None:
            y = y + bias[c]
        outputs.append(y)
    return torch.stack(outputs, dim=1), new_mean, new_var
