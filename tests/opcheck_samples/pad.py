"""opcheck samples for pad_nd and _pad_nd_backward."""
import torch


def rand(*shape):
    return torch.randn(shape, dtype=torch.float64)


def pad_grad_sample(input_shape, pad, mode):
    """Arguments of _pad_nd_backward: a grad_output shaped like pad_nd's output."""
    out_shape = torch.ops.ndops.pad_nd(torch.zeros(input_shape), pad, mode, 0.0).shape
    return rand(*out_shape), list(input_shape), pad, mode


SAMPLES = {
    "pad_nd": [
        lambda: (rand(2, 3, 4, 5), [1, 2, -1, 1], "constant", 0.5),
        lambda: (rand(1, 2, 3, 4, 3, 2), [1, 1, 2, 0, 0, 1, 2, 1], "reflect", 0.0),
        lambda: (rand(2, 3, 4), [2, 3], "replicate", 0.0),
        lambda: (rand(1, 2, 3, 4, 3), [-1, 2, 3, 0, 1, 1], "circular", 0.0),
        lambda: (torch.randint(0, 9, (2, 3, 4)), [1, 1], "constant", 2.0),
    ],
    "_pad_nd_backward": [
        lambda: pad_grad_sample((2, 3, 4, 5), [1, 2, -1, 1], "constant"),
        lambda: pad_grad_sample((1, 2, 3, 4, 3, 2), [1, 1, 2, 0, 0, 1, 2, 1], "reflect"),
        lambda: pad_grad_sample((2, 3, 4), [2, 3], "replicate"),
        lambda: pad_grad_sample((1, 2, 3, 4, 3), [-1, 2, 3, 0, 1, 1], "circular"),
    ],
}


