"""Forward + gradient runs of one-input ops and of (x, weight, bias) ops, and their comparison."""
import torch


def forward_and_grad(fn, x, grad_output=None):
    """(fn(x), the gradient of sum(fn(x) * grad_output) for x, grad_output); ``grad_output``
    is drawn (seed 1) when not given."""
    leaf = x.detach().clone().requires_grad_()
    out = fn(leaf)
    if grad_output is None:
        grad_output = torch.randn(out.shape, dtype=out.dtype,
                                  generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad(out, leaf, grad_output)
    return out, grad, grad_output


def forward_and_grads(fn, x, w, b, kwargs, grad_output=None):
    """fn's output and the gradients of sum(out * grad_output) for x, w (and b);
    ``grad_output`` is drawn (seed 1) when not given."""
    leaves = [t.detach().clone().requires_grad_() for t in (x, w, b) if t is not None]
    out = fn(leaves[0], leaves[1], leaves[2] if b is not None else None, **kwargs)
    if grad_output is None:
        grad_output = torch.randn(out.shape, dtype=out.dtype,
                                  generator=torch.Generator().manual_seed(1))
    return (out, *torch.autograd.grad(out, leaves, grad_output)), grad_output


def assert_all_close(actual, expected, msg):
    """Outputs and gradients equal; ``expected`` may hold None for an absent bias's grad."""
    expected = [e for e in expected if e is not None]
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, msg=lambda m: f"{msg}\n{m}")
