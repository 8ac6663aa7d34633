"""torch.library registrations for pad_nd and _pad_nd_backward (csrc/cpu/pad.cpp)."""
import torch


def register():
    """Attach the fake kernels and autograd of pad_nd and its backward."""

    def padded_shape(sizes, pad):
        torch._check(len(pad) % 2 == 0, lambda: f"ndops::pad_nd: odd pad length {len(pad)}")
        n = len(pad) // 2
        torch._check(n <= len(sizes), lambda: "ndops::pad_nd: pad longer than 2 * input.dim()")
        shape = list(sizes[:len(sizes) - n])
        for d in range(n):  # pair n - 1 - d pads padded dim d (torch lists the last dim first)
            left, right = pad[2 * (n - 1 - d)], pad[2 * (n - 1 - d) + 1]
            shape.append(sizes[len(sizes) - n + d] + left + right)
        return shape

    @torch.library.register_fake("ndops::pad_nd")
    def _(input, pad, mode, value):
        return input.new_empty(padded_shape(input.shape, pad))

    @torch.library.register_fake("ndops::_pad_nd_backward")
    def _(grad_output, input_size, pad, mode):
        torch._check(list(grad_output.shape) == padded_shape(input_size, pad),
                     lambda: "ndops::_pad_nd_backward: grad_output does not match input_size")
        return grad_output.new_empty(input_size)

    def setup_pad(ctx, inputs, output):
        input, pad, mode, _value = inputs
        ctx.input_size, ctx.pad, ctx.mode = list(input.shape), pad, mode

    def pad_backward(ctx, grad):
        grad_input = torch.ops.ndops._pad_nd_backward(grad, ctx.input_size, ctx.pad, ctx.mode)
        return grad_input, None, None, None

    def setup_pad_backward(ctx, inputs, output):
        _grad_output, _input_size, pad, mode = inputs
        ctx.pad, ctx.mode = pad, mode

    def pad_backward_backward(ctx, grad):
        # _pad_nd_backward scatters-adds along the padding map; its adjoint gathers along the
        # same map, which is pad_nd itself with a zero fill.
        return torch.ops.ndops.pad_nd(grad, ctx.pad, ctx.mode, 0.0), None, None, None

    torch.library.register_autograd("ndops::pad_nd", pad_backward, setup_context=setup_pad)
    torch.library.register_autograd("ndops::_pad_nd_backward", pad_backward_backward,
                                    setup_context=setup_pad_backward)
