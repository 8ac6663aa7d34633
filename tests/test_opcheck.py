"""torch.library.opcheck (schema, autograd registration, fake kernel, AOT dispatch) for every
op in torch.ops.ndops, on the sample inputs in SAMPLES, with and without requires_grad.

A new op must add samples here: test_every_op_has_samples fails otherwise.
"""
import pytest
import torch

import ndops

pytestmark = pytest.mark.skipif(not ndops.has_extension(),
                                reason=f"extension not built: {ndops.load_error()}")


def rand(*shape):
    return torch.randn(shape, dtype=torch.float64)


def pad_grad_sample(input_shape, pad, mode):
    """Arguments of _pad_nd_backward: a grad_output shaped like pad_nd's output."""
    out_shape = torch.ops.ndops.pad_nd(torch.zeros(input_shape), pad, mode, 0.0).shape
    return rand(*out_shape), list(input_shape), pad, mode


# op name -> functions returning a tuple of positional arguments (fresh tensors each call).
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


def registered_ops():
    """Every op name in the ndops namespace (overload names stripped)."""
    names = torch._C._dispatch_get_all_op_names()
    return sorted({n.split("::", 1)[1].split(".")[0] for n in names if n.startswith("ndops::")})


def test_every_op_has_samples():
    ops = registered_ops()
    missing = [op for op in ops if not SAMPLES.get(op)]
    assert not missing, f"ops without opcheck samples in tests/test_opcheck.py: {missing}"
    stale = sorted(set(SAMPLES) - set(ops))
    assert not stale, f"SAMPLES names ops that are not registered: {stale}"


CASES = [(op, i) for op, samples in SAMPLES.items() for i in range(len(samples))]


@pytest.mark.parametrize("requires_grad", [False, True], ids=["no_grad", "grad"])
@pytest.mark.parametrize("op,index", CASES, ids=[f"{op}-{i}" for op, i in CASES])
def test_opcheck(op, index, requires_grad):
    args = SAMPLES[op][index]()
    if requires_grad:
        floating = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
        if not floating:
            pytest.skip("sample has no floating-point tensor")
        for a in floating:
            a.requires_grad_(True)
    torch.library.opcheck(getattr(torch.ops.ndops, op).default, args)
