"""opcheck samples for batch_norm_act_nd and _batch_norm_act_nd_backward."""
import torch

F64 = torch.float64


def rand(*shape, dtype=F64):
    return torch.randn(shape, dtype=dtype)


def channel_stats(channels, dtype=F64):
    return torch.randn(channels, dtype=dtype), torch.rand(channels, dtype=dtype) + 0.5


def forward_sample(shape, training, activation, tracked=True, affine=True, dtype=F64,
                   param_dtype=None):
    """Arguments of batch_norm_act_nd: input, running_mean, running_var, weight, bias, ..."""
    channels, param_dtype = shape[1], param_dtype or dtype
    running = channel_stats(channels, param_dtype) if tracked else (None, None)
    params = (rand(channels, dtype=param_dtype), rand(channels, dtype=param_dtype)) if affine \
        else (None, None)
    return (rand(*shape, dtype=dtype), *running, *params, training, 0.1, 1e-5, activation, 0.2)


def backward_sample(shape, training, activation, affine=True):
    """Arguments of _batch_norm_act_nd_backward, with the statistics the forward saved."""
    x, running_mean, running_var, weight, bias, *_ = forward_sample(shape, training, activation,
                                                                    affine=affine)
    _, mean, invstd, _, _ = torch.ops.ndops.batch_norm_act_nd(
        x, running_mean, running_var, weight, bias, training, 0.1, 1e-5, activation, 0.2)
    return rand(*shape), x, weight, bias, mean, invstd, training, 1e-5, activation, 0.2


SAMPLES = {
    "batch_norm_act_nd": [
        lambda: forward_sample((2, 3, 4, 5), True, "relu"),
        lambda: forward_sample((2, 3, 3, 2, 2, 3), False, "silu"),
        lambda: forward_sample((3, 2, 5), True, "gelu", tracked=False, affine=False),
        lambda: forward_sample((2, 4), True, "leaky_relu"),
        lambda: forward_sample((2, 3, 4, 4), True, "gelu_tanh", dtype=torch.bfloat16,
                               param_dtype=torch.float32),
        lambda: forward_sample((0, 3, 4), True, "none"),
    ],
    "_batch_norm_act_nd_backward": [
        lambda: backward_sample((2, 3, 4, 5), True, "relu"),
        lambda: backward_sample((2, 3, 3, 2, 2, 3), False, "gelu"),
        lambda: backward_sample((3, 2, 5), True, "silu", affine=False),
        lambda: backward_sample((2, 2, 3, 3), True, "leaky_relu"),
    ],
}
