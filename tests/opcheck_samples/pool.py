"""opcheck samples for the pooling ops and their backward ops (csrc/cpu/pool.cpp,
csrc/cpu/adaptive_pool.cpp)."""
import torch

ops = torch.ops.ndops


def rand(*shape):
    return torch.randn(shape, dtype=torch.float64)


def max_pool_args(shape, k, s, p, d, ceil_mode, return_indices):
    return rand(*shape), k, s, p, d, ceil_mode, return_indices


def scatter_sample(shape, *window):
    """_max_pool_nd_backward's arguments: a grad and the indices of a max pool of `shape`."""
    values, indices = ops.max_pool_nd(rand(*shape), *window, True)
    return torch.randn_like(values), indices, list(shape)


def avg_grad_sample(shape, *window):
    out = ops.avg_pool_nd(torch.zeros(shape, dtype=torch.float64), *window)
    return (torch.randn_like(out), list(shape), *window)


def unpool_sample(shape, window, output_size):
    values, indices = ops.max_pool_nd(rand(*shape), *window, False, True)
    return values, indices, output_size


def gather_sample(shape, window, output_size):
    _, indices = ops.max_pool_nd(rand(*shape), *window, False, True)
    return rand(*shape[:2], *output_size), indices


WINDOW_4D = ([2, 3, 2, 2], [2, 1, 2, 2], [1, 1, 0, 1], [1, 1, 2, 1], True)
WINDOW_1D = ([3], [2], [1], [2], False)
AVG_4D = ([3, 2, 2, 2], [2, 2, 1, 2], [1, 0, 1, 1], True, False, None)
AVG_2D = ([3, 2], [2, 1], [1, 1], False, True, 5)

SAMPLES = {
    "max_pool_nd": [
        lambda: max_pool_args((2, 3, 5, 6, 4, 5), *WINDOW_4D, True),
        lambda: max_pool_args((1, 2, 9), *WINDOW_1D, False),
        lambda: (torch.randint(-9, 9, (2, 2, 5, 4)), [2, 2], [1, 2], [1, 0], [1, 1], False,
                 True),
    ],
    "_max_pool_nd_backward": [
        lambda: scatter_sample((2, 3, 5, 6, 4, 5), *WINDOW_4D),
        lambda: scatter_sample((1, 2, 9), *WINDOW_1D),
    ],
    "avg_pool_nd": [
        lambda: (rand(2, 3, 5, 6, 4, 5), *AVG_4D),
        lambda: (rand(1, 2, 7, 6), *AVG_2D),
    ],
    "_avg_pool_nd_backward": [
        lambda: avg_grad_sample((2, 3, 5, 6, 4, 5), *AVG_4D),
        lambda: avg_grad_sample((1, 2, 7, 6), *AVG_2D),
    ],
    "adaptive_avg_pool_nd": [
        lambda: (rand(2, 3, 5, 6, 4, 5), [3, 2, 4, 1]),
        lambda: (rand(1, 2, 7), [3]),
    ],
    "_adaptive_avg_pool_nd_backward": [
        lambda: (rand(2, 3, 3, 2, 4, 1), [2, 3, 5, 6, 4, 5]),
        lambda: (rand(1, 2, 9), [1, 2, 7]),
    ],
    "adaptive_max_pool_nd": [
        lambda: (rand(2, 3, 5, 6, 4, 5), [3, 2, 4, 1], True),
        lambda: (rand(1, 2, 5, 4), [2, 3], False),
    ],
    "max_unpool_nd": [
        lambda: unpool_sample((2, 3, 6, 4, 4, 6), ([2] * 4, [2] * 4, [0] * 4, [1] * 4),
                              [6, 5, 4, 7]),
        lambda: unpool_sample((1, 2, 9), ([3], [3], [0], [1]), [9]),
    ],
    "_max_unpool_nd_backward": [
        lambda: gather_sample((2, 3, 6, 4, 4, 6), ([2] * 4, [2] * 4, [0] * 4, [1] * 4),
                              [6, 5, 4, 7]),
        lambda: gather_sample((1, 2, 9), ([3], [3], [0], [1]), [9]),
    ],
}
