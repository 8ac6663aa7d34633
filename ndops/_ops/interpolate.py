"""torch.library registrations for interpolate_nd and _interpolate_nd_backward
(csrc/cpu/interpolate.cpp)."""
import torch


def _channels_last(t, n):
    """The kernels' layout rule (csrc/common/interp_shape.h): a (B, C, *spatial) tensor with n
    spatial dims stored channels-last, and not also contiguous, gives a channels-last result."""
    return t.dim() == n + 2 and not t.is_contiguous() and t.movedim(1, -1).is_contiguous()


def _resized_shape(sizes, output_size):
    n = len(output_size)
    torch._check(1 <= n <= len(sizes),
                 lambda: "ndops::interpolate_nd: output_size must have 1 to input.dim() entries")
    return list(sizes[:len(sizes) - n]) + list(output_size)


def _new_result(like, shape, n):
    """An empty tensor of ``shape`` laid out as the kernels lay out their result for ``like``."""
    if _channels_last(like, n):
        return like.new_empty([shape[0], *shape[2:], shape[1]]).movedim(-1, 1)
    return like.new_empty(shape)


def register():
    """Attach the fake kernels and autograd of interpolate_nd and its backward."""

    @torch.library.register_fake("ndops::interpolate_nd")
    def _(input, output_size, scales, mode, align_corners, antialias):
        return _new_result(input, _resized_shape(input.shape, output_size), len(output_size))

    @torch.library.register_fake("ndops::_interpolate_nd_backward")
    def _(grad_output, output_size, input_size, scales, mode, align_corners):
        torch._check(list(grad_output.shape) == _resized_shape(input_size, output_size),
                     lambda: "ndops::_interpolate_nd_backward: grad_output does not match "
                             "input_size and output_size")
        return _new_result(grad_output, list(input_size), len(output_size))

    def setup_interpolate(ctx, inputs, output):
        input, output_size, scales, mode, align_corners, _antialias = inputs
        ctx.args = (output_size, list(input.shape), scales, mode, align_corners)

    def interpolate_backward(ctx, grad):
        grad_input = torch.ops.ndops._interpolate_nd_backward(grad, *ctx.args)
        return grad_input, None, None, None, None, None

    def setup_interpolate_backward(ctx, inputs, output):
        _grad_output, output_size, _input_size, scales, mode, align_corners = inputs
        ctx.args = (output_size, scales, mode, align_corners)

    def interpolate_backward_backward(ctx, grad):
        # The backward is the adjoint of the (linear) interpolation, whose adjoint is the
        # interpolation itself.
        output_size, scales, mode, align_corners = ctx.args
        grad_grad = torch.ops.ndops.interpolate_nd(grad, output_size, scales, mode,
                                                   align_corners, False)
        return grad_grad, None, None, None, None, None

    torch.library.register_autograd("ndops::interpolate_nd", interpolate_backward,
                                    setup_context=setup_interpolate)
    torch.library.register_autograd("ndops::_interpolate_nd_backward",
                                    interpolate_backward_backward,
                                    setup_context=setup_interpolate_backward)
