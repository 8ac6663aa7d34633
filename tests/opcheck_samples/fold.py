"""opcheck samples for unfold_nd and fold_nd (csrc/cpu/fold.cpp)."""
import torch


def rand(*shape):
    return torch.randn(shape, dtype=torch.float64)


def fold_sample(batch, channels, size, kernel_size, dilation, padding, stride):
    """fold_nd's arguments: columns shaped like unfold_nd's output for an image of `size`."""
    window = (kernel_size, dilation, padding, stride)
    image = torch.zeros(batch, channels, *size, dtype=torch.float64)
    columns = torch.ops.ndops.unfold_nd(image, *window)
    return (torch.randn_like(columns), list(size), *window)


WINDOW_4D = ([2, 3, 1, 2], [1, 1, 2, 2], [1, 0, 1, 1], [2, 1, 1, 2])
WINDOW_1D = ([3], [2], [2], [1])
WINDOW_2D = ([2, 3], [1, 2], [0, 1], [2, 1])

SAMPLES = {
    "unfold_nd": [
        lambda: (rand(2, 3, 5, 6, 4, 5), *WINDOW_4D),
        lambda: (rand(1, 2, 9), *WINDOW_1D),
        lambda: (rand(2, 2, 6, 7), *WINDOW_2D),
    ],
    "fold_nd": [
        lambda: fold_sample(2, 3, (5, 6, 4, 5), *WINDOW_4D),
        lambda: fold_sample(1, 2, (9,), *WINDOW_1D),
        lambda: fold_sample(2, 2, (6, 7), *WINDOW_2D),
    ],
}
