"""opcheck samples for interpolate_nd and _interpolate_nd_backward."""
import torch


def rand(*shape):
    return torch.randn(shape, dtype=torch.float64)


def channels_last(*shape):
    """A (B, C, *spatial) tensor stored channels-last (the kernels keep that layout)."""
    return rand(shape[0], *shape[2:], shape[1]).movedim(-1, 1)


def grad_sample(input_shape, output_size, scales, mode, align_corners=False):
    """Arguments of _interpolate_nd_backward: a grad_output shaped like the forward's output."""
    n = len(output_size)
    out_shape = list(input_shape[:len(input_shape) - n]) + list(output_size)
    return rand(*out_shape), output_size, list(input_shape), scales, mode, align_corners


SAMPLES = {
    "interpolate_nd": [
        lambda: (rand(2, 3, 7), [12], None, "linear", False, False),
        lambda: (rand(1, 2, 4, 5), [7, 3], [1.8, 0.7], "linear", True, False),
        lambda: (rand(2, 2, 3, 4, 3), [6, 8, 6], [2.0, 2.0, 2.0], "nearest", False, False),
        lambda: (rand(1, 2, 3, 2, 3, 2), [4, 3, 5, 3], None, "nearest-exact", False, False),
        lambda: (rand(1, 2, 2, 3, 2, 3), [3, 5, 4, 4], [1.5, 1.7, 2.0, 1.4], "linear", False,
                 False),
        lambda: (channels_last(2, 3, 4, 5), [8, 7], None, "linear", False, False),
        lambda: (torch.randint(0, 255, (1, 2, 3, 4), dtype=torch.uint8), [5, 6], None,
                 "nearest", False, False),
    ],
    "_interpolate_nd_backward": [
        lambda: grad_sample((2, 3, 7), [12], None, "linear"),
        lambda: grad_sample((1, 2, 4, 5), [7, 3], [1.8, 0.7], "linear", True),
        lambda: grad_sample((2, 2, 3, 4, 3), [6, 8, 6], [2.0, 2.0, 2.0], "nearest"),
        lambda: grad_sample((1, 2, 2, 3, 2, 3), [3, 5, 4, 4], [1.5, 1.7, 2.0, 1.4], "linear"),
        lambda: (channels_last(2, 3, 8, 7), [8, 7], [2, 3, 4, 5], None, "linear", False),
    ],
}
