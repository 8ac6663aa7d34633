"""opcheck sample inputs, one module per op family: each defines SAMPLES, a dict from op name
to functions returning a tuple of positional arguments (fresh tensors on each call);
``sample_arguments`` prepares one for opcheck (device, requires_grad)."""
import pytest
import torch


def sample_arguments(sample, requires_grad, device=None):
    """A fresh tuple of ``sample()``'s arguments, its tensors moved to ``device`` when given,
    every floating-point tensor requiring grad when ``requires_grad`` (the test is skipped if
    there is none)."""
    args = tuple(a.to(device) if device is not None and isinstance(a, torch.Tensor) else a
                 for a in sample())
    if requires_grad:
        floating = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
        if not floating:
            pytest.skip("sample has no floating-point tensor")
        for a in floating:
            a.requires_grad_(True)
    return args
