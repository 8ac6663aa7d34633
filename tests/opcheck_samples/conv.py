"""opcheck samples for conv_nd, conv_bias_act_nd, conv_transpose_nd and their backward ops."""
import torch


def rand(*shape):
    return torch.randn(shape, dtype=torch.float64)


def conv_sample(input_shape, weight_shape, bias, stride, padding, dilation, groups):
    """Arguments of conv_nd."""
    b = rand(weight_shape[0]) if bias else None
    return rand(*input_shape), rand(*weight_shape), b, stride, padding, dilation, groups


def backward_sample(mask, *conv_args):
    """Arguments of _conv_nd_backward: a grad_output shaped like conv_nd's output."""
    x, w, _b, stride, padding, dilation, groups = conv_sample(*conv_args)
    out = torch.ops.ndops.conv_nd(x, w, None, stride, padding, dilation, groups)
    return rand(*out.shape), x, w, stride, padding, dilation, groups, mask


CONV_4D = ((2, 4, 5, 4, 3, 4), (6, 2, 3, 2, 1, 3), True, [2, 1, 1, 1], [1, 0, 1, 2],
           [1, 2, 1, 1], 2)
CONV_5D = ((1, 2, 4, 3, 3, 2, 3), (3, 2, 2, 2, 1, 2, 3), False, [1, 1, 2, 1, 1],
           [0, 1, 0, 1, 1], [1] * 5, 1)
CONV_2D = ((2, 3, 5, 4), (2, 3, 3, 2), True, [1, 2], [1, 0], [2, 1], 1)

def bias_act_backward_sample(activation, mask, *conv_args):
    """Arguments of _conv_bias_act_nd_backward, from a forward call."""
    x, w, b, stride, padding, dilation, groups = conv_sample(*conv_args)
    out, pre = torch.ops.ndops.conv_bias_act_nd(x, w, b, stride, padding, dilation, groups,
                                                activation, 0.1)
    return (rand(*out.shape), out, pre, x, w, stride, padding, dilation, groups, activation,
            0.1, mask)


def transpose_sample(input_shape, weight_shape, bias, stride, padding, output_padding, groups,
                     dilation):
    """Arguments of conv_transpose_nd."""
    b = rand(weight_shape[1] * groups) if bias else None
    return (rand(*input_shape), rand(*weight_shape), b, stride, padding, output_padding, groups,
            dilation)


def transpose_backward_sample(mask, *transpose_args):
    x, w, _b, *geometry = transpose_sample(*transpose_args)
    out = torch.ops.ndops.conv_transpose_nd(x, w, None, *geometry)
    return (rand(*out.shape), x, w, *geometry, mask)


TRANSPOSE_4D = ((2, 4, 3, 2, 3, 2), (4, 1, 2, 3, 1, 2), True, [2, 1, 1, 2], [1, 0, 0, 1],
                [1, 0, 0, 0], 2, [1, 1, 2, 1])
TRANSPOSE_2D = ((1, 2, 3, 4), (2, 3, 2, 2), False, [2, 1], [0, 1], [1, 0], 1, [1, 1])

SAMPLES = {
    "conv_nd": [
        lambda: conv_sample(*CONV_4D),
        lambda: conv_sample(*CONV_5D),
        lambda: conv_sample(*CONV_2D),
    ],
    "_conv_nd_backward": [
        lambda: backward_sample([True, True, True], *CONV_4D),
        lambda: backward_sample([False, True, False], *CONV_5D),
        lambda: backward_sample([True, False, True], *CONV_2D),
    ],
    "conv_bias_act_nd": [
        lambda: (*conv_sample(*CONV_4D), "silu", 0.01, "reflect"),
        lambda: (*conv_sample(*CONV_5D), "leaky_relu", 0.2),
        lambda: (*conv_sample(*CONV_2D), "gelu"),
    ],
    "_conv_bias_act_nd_backward": [
        lambda: bias_act_backward_sample("gelu_tanh", [True, True, True], *CONV_4D),
        lambda: bias_act_backward_sample("relu", [True, False, False], *CONV_2D),
    ],
    "conv_transpose_nd": [
        lambda: transpose_sample(*TRANSPOSE_4D),
        lambda: transpose_sample(*TRANSPOSE_2D),
    ],
    "_conv_transpose_nd_backward": [
        lambda: transpose_backward_sample([True, True, True], *TRANSPOSE_4D),
        lambda: transpose_backward_sample([False, True, False], *TRANSPOSE_2D),
    ],
}
