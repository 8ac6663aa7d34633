"""batch_norm_nd: every backend against torch (N <= 3) and the brute-force reference (N = 4, 5):
output, gradients and the running statistics after the call; edge cases and argument errors."""
import random

import pytest
import torch
import torch.nn.functional as F

import ndops
from helpers.batch_norm import draw_case, run
from reference import norm as ref

F64 = torch.float64
OP = "batch_norm_nd"


def check_all_backends(case, n, expected_fn):
    expected, grad_output = run(expected_fn, case)
    for name in ndops.available_backends(OP, n):
        with ndops.backend(name):
            actual, _ = run(ndops.batch_norm_nd, case, grad_output)
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            torch.testing.assert_close(a, e, msg=f"{name}: training={case[5]}")


@pytest.mark.parametrize("seed", range(30))
def test_matches_torch(seed):
    rng = random.Random(seed)
    n = seed % 4  # N = 0 is (B, C), BatchNorm1d's no-spatial case
    check_all_backends(draw_case(rng, n), n, F.batch_norm)


@pytest.mark.parametrize("seed", range(8))
def test_matches_reference(seed):
    rng = random.Random(100 + seed)
    n = 4 + seed % 2
    case = draw_case(rng, n, max_size=3)
    check_all_backends(case, n, ref.batch_norm)
    check_all_backends(case, n, F.batch_norm)  # torch's batch_norm accepts any rank


def test_reference_matches_torch():
    case = draw_case(random.Random(7), 2)
    case = (*case[:5], True, *case[6:])
    expected, grad_output = run(F.batch_norm, case)
    actual, _ = run(ref.batch_norm, case, grad_output)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck(n, training):
    x = torch.randn(2, 3, *[3, 2, 2, 2][:n], dtype=F64, requires_grad=True)
    weight = torch.randn(3, dtype=F64, requires_grad=True)
    bias = torch.randn(3, dtype=F64, requires_grad=True)
    running_mean, running_var = torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64)
    for name in ndops.available_backends(OP, n):
        with ndops.backend(name):
            assert torch.autograd.gradcheck(
                lambda *t: ndops.batch_norm_nd(t[0], running_mean.clone(), running_var.clone(),
                                               t[1], t[2], training),
                (x, weight, bias), fast_mode=True)


@pytest.mark.parametrize("n", [1, 4])
def test_zero_batch(n):
    x = torch.randn(0, 3, *[2] * n, requires_grad=True)
    weight = torch.randn(3, requires_grad=True)
    for name in ndops.available_backends(OP, n):
        running_mean, running_var = torch.zeros(3), torch.ones(3)
        with ndops.backend(name):
            out = ndops.batch_norm_nd(x, running_mean, running_var, weight, training=True)
        assert out.shape == x.shape
        out.sum().backward()
        # like torch: an empty batch leaves the running stats alone
        assert torch.equal(running_mean, torch.zeros(3))
        assert torch.equal(running_var, torch.ones(3))


@pytest.mark.parametrize("n", [2, 4])
def test_non_contiguous(n):
    x = torch.randn(3, 4, *[5] * n, dtype=F64).transpose(0, 1)[..., 1:]
    assert not x.is_contiguous()
    for name in ndops.available_backends(OP, n):
        for training in (True, False):
            stats = [torch.zeros(3, dtype=F64), torch.ones(3, dtype=F64)]
            stats_c = [s.clone() for s in stats]
            with ndops.backend(name):
                out = ndops.batch_norm_nd(x, *stats, training=training)
                expected = ndops.batch_norm_nd(x.contiguous(), *stats_c, training=training)
            torch.testing.assert_close(out, expected)
            torch.testing.assert_close(stats, stats_c)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_unbatched(n):
    x = torch.randn(3, *[4] * n, dtype=F64)
    expected = F.batch_norm(x.unsqueeze(0), None, None, training=True)[0]
    for name in ndops.available_backends(OP, n):
        with ndops.backend(name):
            out = ndops.batch_norm_nd(x, None, None, training=True, spatial_dims=n)
        torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_with_float32_parameters(dtype):
    x = torch.randn(4, 3, 5, 6).to(dtype)
    weight, bias = torch.randn(3), torch.randn(3)
    stats = [torch.zeros(3), torch.ones(3)]
    stats_torch = [s.clone() for s in stats]
    expected = F.batch_norm(x, *stats_torch, weight, bias, training=True)
    for name in ndops.available_backends(OP, 2):
        stats_nd = [s.clone() for s in stats]
        with ndops.backend(name):
            out = ndops.batch_norm_nd(x, *stats_nd, weight, bias, training=True)
        assert out.dtype == dtype
        torch.testing.assert_close(out, expected)
        torch.testing.assert_close(stats_nd, stats_torch)


X = torch.randn(2, 3, 4, 4)
C3 = torch.ones(3)
BAD = [
    (dict(running_mean=torch.zeros(4), running_var=C3), ValueError, "running_mean must have shape"),
    (dict(running_mean=C3, running_var=torch.ones(2)), ValueError, "running_var must have shape"),
    (dict(running_mean=C3, running_var=C3, weight=torch.ones(2)), ValueError,
     "weight must have shape"),
    (dict(running_mean=C3, running_var=C3, bias=torch.ones(3, 1)), ValueError,
     "bias must have shape"),
    (dict(running_mean=None, running_var=None), ValueError, "must be given when training=False"),
    (dict(running_mean=C3, running_var=None, training=True), ValueError, "both be given"),
    (dict(input=torch.randn(1, 3, 1, 1), running_mean=None, running_var=None, training=True),
     ValueError, "more than 1 value per channel"),
    (dict(input=torch.randn(1, 3), running_mean=None, running_var=None, training=True),
     ValueError, "more than 1 value per channel"),
    (dict(input=X.double(), running_mean=C3, running_var=C3), RuntimeError, "dtype"),
    (dict(running_mean=C3.double(), running_var=C3.double()), RuntimeError, "dtype"),
    (dict(running_mean=C3, running_var=C3, weight=C3.half()), RuntimeError, "dtype"),
    (dict(input=X.long(), running_mean=C3, running_var=C3), RuntimeError, "floating-point"),
    (dict(running_mean=C3, running_var=C3, weight=torch.ones(3, device="meta")), RuntimeError,
     "same device"),
    (dict(running_mean=C3, running_var=C3, momentum=None), ValueError, "momentum"),
    (dict(running_mean=C3, running_var=C3, eps="1e-5"), ValueError, "eps"),
    (dict(input=torch.randn(5), running_mean=C3, running_var=C3), ValueError,
     "input must have shape"),
    (dict(running_mean=C3, running_var=C3, spatial_dims=4), ValueError, "rank 6 or 5"),
]


@pytest.mark.parametrize("name", ["native", "fallback"])
@pytest.mark.parametrize("kwargs,error,match", BAD)
def test_bad_arguments(name, kwargs, error, match):
    kwargs = dict(kwargs)
    input = kwargs.pop("input", X)
    with ndops.backend(name), pytest.raises(error, match=match):
        ndops.batch_norm_nd(input, **kwargs)
