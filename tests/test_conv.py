"""conv_nd and conv_transpose_nd: every backend against torch (N <= 3) and the brute-force
reference (N = 4, 5), forward and gradients; the fallback's recursion and chunking; edge cases
and argument errors."""
import random

import pytest
import torch
import torch.nn.functional as F

import ndops
from ndops.fallback import conv as fallback
from helpers.grads import assert_all_close, forward_and_grads
from reference import conv as ref

pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same'")

F64 = torch.float64


def _per_dim(rng, n, low, high):
    """An int (all dims equal) or a tuple of n ints in [low, high]."""
    if rng.random() < 0.4:
        return rng.randint(low, high)
    return tuple(rng.randint(low, high) for _ in range(n))


def _as_tuple(value, n):
    return value if isinstance(value, tuple) else (value,) * n


def conv_case(rng, n, max_extra=4):
    """Random (x, w, b, kwargs) for conv_nd, every kind of padding included."""
    groups = rng.choice([1, 1, 2, 3])
    kernel = [rng.randint(1, 3) for _ in range(n)]
    dilation = _per_dim(rng, n, 1, 2)
    padding = rng.choice(["same", "valid", "int", "int"])
    if padding == "int":
        padding = _per_dim(rng, n, 0, 2)
    stride = 1 if padding == "same" else _per_dim(rng, n, 1, 3)
    span = [d * (k - 1) + 1 for k, d in zip(kernel, _as_tuple(dilation, n))]
    size = [s + rng.randint(0, max_extra) for s in span]
    x = torch.randn(rng.randint(1, 2), groups * rng.randint(1, 2), *size, dtype=F64)
    w = torch.randn(groups * rng.randint(1, 2), x.shape[1] // groups, *kernel, dtype=F64)
    b = torch.randn(w.shape[0], dtype=F64) if rng.random() < 0.6 else None
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def conv_transpose_case(rng, n, max_size=4):
    """Random (x, w, b, kwargs) for conv_transpose_nd with a non-empty output."""
    groups = rng.choice([1, 1, 2, 3])
    kernel = [rng.randint(1, 3) for _ in range(n)]
    stride, dilation = _per_dim(rng, n, 1, 3), _per_dim(rng, n, 1, 2)
    limits = [max(s, d) - 1 for s, d in zip(_as_tuple(stride, n), _as_tuple(dilation, n))]
    output_padding = tuple(rng.randint(0, m) for m in limits)
    size = [rng.randint(1, max_size) for _ in range(n)]
    # padding at most half of what the output has without it, so the output stays non-empty
    room = [(i - 1) * s + d * (k - 1) + q for i, s, d, k, q in
            zip(size, _as_tuple(stride, n), _as_tuple(dilation, n), kernel, output_padding)]
    padding = tuple(rng.randint(0, min(2, r // 2)) for r in room)
    x = torch.randn(rng.randint(1, 2), groups * rng.randint(1, 2), *size, dtype=F64)
    w = torch.randn(x.shape[1], rng.randint(1, 2), *kernel, dtype=F64)
    b = torch.randn(w.shape[1] * groups, dtype=F64) if rng.random() < 0.6 else None
    return x, w, b, dict(stride=stride, padding=padding, output_padding=output_padding,
                         groups=groups, dilation=dilation)


OPS = {  # name: (ndops op, random case, torch op at N, brute-force reference)
    "conv_nd": (ndops.conv_nd, conv_case, lambda n: getattr(F, f"conv{n}d"), ref.conv_nd),
    "conv_transpose_nd": (ndops.conv_transpose_nd, conv_transpose_case,
                          lambda n: getattr(F, f"conv_transpose{n}d"), ref.conv_transpose_nd),
}


def _backend_params(dims):
    return [(op, n, backend) for op in OPS for n in dims
            for backend in ndops.available_backends(op, n)]


@pytest.mark.parametrize("op,n,backend", _backend_params((1, 2, 3)))
def test_matches_torch_forward_and_grads(op, n, backend):
    ours, make_case, torch_op, _ = OPS[op]
    rng = random.Random(f"{op}{n}")
    for _ in range(30):
        x, w, b, kwargs = make_case(rng, n)
        expected, grad_output = forward_and_grads(torch_op(n), x, w, b, kwargs)
        with ndops.backend(backend):
            actual, _ = forward_and_grads(ours, x, w, b, kwargs, grad_output)
        assert_all_close(actual, expected, f"{op} {tuple(x.shape)} {tuple(w.shape)} {kwargs}")


@pytest.mark.parametrize("op,n,backend", _backend_params((4, 5)))
def test_matches_reference_forward_and_grads(op, n, backend):
    ours, make_case, _, reference = OPS[op]
    rng = random.Random(f"{op}{n}")
    sizes = {"conv_nd": {4: 2, 5: 1}, "conv_transpose_nd": {4: 3, 5: 2}}[op][n]
    for _ in range(8 if n == 4 else 4):
        x, w, b, kwargs = make_case(rng, n, sizes)
        with ndops.backend(backend):
            actual, grad_output = forward_and_grads(ours, x, w, b, kwargs)
        expected = reference(x, w, b, **kwargs, grad_output=grad_output)
        assert_all_close(actual, expected, f"{op} {tuple(x.shape)} {tuple(w.shape)} {kwargs}")


def _fallback_call(op, native_max_dims, workspace_bytes=None):
    """The fallback op with normalized (tuple) arguments, as ndops.functional calls it."""
    def call(x, w, b, **kwargs):
        n = w.dim() - 2
        args = {k: _as_tuple(v, n) if k != "groups" else v for k, v in kwargs.items()}
        fn = getattr(fallback, op)
        return fn(x, w, b, **args, native_max_dims=native_max_dims,
                  workspace_bytes=workspace_bytes)
    return call


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("n,native_max_dims,workspace_bytes",
                         [(2, 1, None), (3, 1, None), (3, 2, None), (3, 1, 1), (3, 2, 1)])
def test_forced_recursion_matches_torch(op, n, native_max_dims, workspace_bytes):
    _, make_case, torch_op, _ = OPS[op]
    rng = random.Random(f"recursion {op}{n}")
    call = _fallback_call(op, native_max_dims, workspace_bytes)
    for _ in range(15):
        x, w, b, kwargs = make_case(rng, n)
        if kwargs.get("padding") in ("same", "valid"):
            kwargs["padding"] = 1 if kwargs["padding"] == "same" else 0
        expected, grad_output = forward_and_grads(torch_op(n), x, w, b, kwargs)
        actual, _ = forward_and_grads(call, x, w, b, kwargs, grad_output)
        assert_all_close(actual, expected, f"{op} {tuple(x.shape)} {tuple(w.shape)} {kwargs}")


@pytest.mark.parametrize("op", list(OPS))
def test_chunking_does_not_change_results(op):
    _, make_case, _, _ = OPS[op]
    rng = random.Random(f"chunks {op}")
    for _ in range(3):
        x, w, b, kwargs = make_case(rng, 4, 3)
        if kwargs.get("padding") in ("same", "valid"):
            kwargs["padding"] = 0
        whole, grad_output = forward_and_grads(_fallback_call(op, 3), x, w, b, kwargs)
        chunked, _ = forward_and_grads(_fallback_call(op, 3, workspace_bytes=1), x, w, b,
                                       kwargs, grad_output)
        assert_all_close(chunked, whole, f"{op} {kwargs}")


@pytest.mark.parametrize("op,n,backend", _backend_params((1, 2, 3, 4)))
def test_gradcheck(op, n, backend):
    x = torch.randn(1, 2, *[3] * n, dtype=F64, requires_grad=True)
    shape = (2, 1) if op == "conv_nd" else (2, 2)
    w = torch.randn(*shape, *[2] * n, dtype=F64, requires_grad=True)
    b = torch.randn(4 if op == "conv_transpose_nd" else 2, dtype=F64, requires_grad=True)
    kwargs = dict(stride=2, padding=1, groups=2)
    if op == "conv_transpose_nd":
        kwargs["output_padding"] = 1
    with ndops.backend(backend):
        assert torch.autograd.gradcheck(lambda *t: OPS[op][0](*t, **kwargs), (x, w, b),
                                        fast_mode=n == 4)


@pytest.mark.parametrize("op,n,backend", _backend_params((2, 4)))
def test_zero_batch(op, n, backend):
    x = torch.randn(0, 4, *[5] * n)
    w = torch.randn(4, 2, *[3] * n, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    with ndops.backend(backend):
        out = OPS[op][0](x, w, b, padding=1, groups=2)
    assert out.shape == (0, 4, *[5] * n)
    out.sum().backward()
    assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(b.grad, torch.zeros_like(b))


@pytest.mark.parametrize("op,n,backend", _backend_params((2, 3, 4)))
def test_non_contiguous_input_and_weight(op, n, backend):
    ours, _, _, _ = OPS[op]
    x = torch.randn(2, *[5] * n, 6, dtype=F64).movedim(-1, 1)[:, 1:5]  # channels-last, sliced
    w = torch.randn(4, 4, *[3] * n, dtype=F64).transpose(0, 1)[..., ::2]  # kernel 3, .., 3, 2
    kwargs = dict(stride=2, padding=1, dilation=2)
    assert not x.is_contiguous() and not w.is_contiguous()
    with ndops.backend(backend):
        actual = ours(x, w, None, **kwargs)
    reference_op = OPS[op][2](n) if n <= 3 else ours  # at N = 4: the contiguous call
    torch.testing.assert_close(actual, reference_op(x.contiguous(), w.contiguous(), None,
                                                    **kwargs))


@pytest.mark.parametrize("op,n,backend", _backend_params((1, 2, 3, 4)))
def test_unbatched_input(op, n, backend):
    ours, _, torch_op, _ = OPS[op]
    x = torch.randn(4, *[5] * n, dtype=F64)
    w = torch.randn(4, 4 if op == "conv_nd" else 2, *[2] * n, dtype=F64)
    b = torch.randn(4, dtype=F64)
    kwargs = dict(padding="same") if op == "conv_nd" else dict(stride=2, groups=2)
    with ndops.backend(backend):
        actual = ours(x, w, b, **kwargs)
    expected = (torch_op(n)(x, w, b, **kwargs) if n <= 3
                else ours(x.unsqueeze(0), w, b, **kwargs).squeeze(0))
    torch.testing.assert_close(actual, expected)


def _bad_calls(n):
    """(id, op, arguments, error type, match) for every documented argument error at N = n."""
    x, w, wt = torch.randn(2, 4, *[6] * n), torch.randn(6, 4, *[3] * n), torch.randn(4, 3, *[3] * n)
    conv, conv_t = "conv_nd", "conv_transpose_nd"
    short = (1,) * (n - 1) if n > 1 else (1, 1)
    kernel0 = torch.randn(6, 4, *[3] * (n - 1), 0)
    return [
        ("rank", conv, (torch.randn(4, *[6] * (n + 2)), w), {}, ValueError, "input must have"),
        ("rank_t", conv_t, (torch.randn(4), wt), {}, ValueError, "input must have"),
        ("channels", conv, (torch.randn(2, 6, *[6] * n), w), {"groups": 2}, ValueError,
         "in_channels = weight.shape"),
        ("channels_t", conv_t, (torch.randn(2, 6, *[6] * n), wt), {}, ValueError,
         "in_channels = weight.shape"),
        ("groups0", conv, (x, w), {"groups": 0}, ValueError, "groups must be"),
        ("groups_in", conv, (x, torch.randn(6, 1, *[3] * n)), {"groups": 3}, ValueError,
         r"groups=3 must divide in_channels"),
        ("groups_out", conv, (x, torch.randn(3, 1, *[3] * n)), {"groups": 4}, ValueError,
         r"groups=4 must divide out_channels"),
        ("groups_t", conv_t, (x, wt), {"groups": 3}, ValueError, r"groups=3 must divide"),
        ("tuple_len", conv, (x, w), {"stride": short}, ValueError, "stride"),
        ("tuple_len_t", conv_t, (x, wt), {"output_padding": short}, ValueError, "output_padding"),
        ("kernel0", conv, (x, kernel0), {}, ValueError, "kernel size"),
        ("stride0", conv, (x, w), {"stride": 0}, ValueError, "stride must be > 0"),
        ("dilation0", conv_t, (x, wt), {"dilation": 0}, ValueError, "dilation must be > 0"),
        ("padding<0", conv, (x, w), {"padding": -1}, ValueError, "padding must be >= 0"),
        ("padding<0_t", conv_t, (x, wt), {"padding": -1}, ValueError, "padding must be >= 0"),
        ("padding_str", conv, (x, w), {"padding": "full"}, ValueError, "padding must be"),
        ("padding_str_t", conv_t, (x, wt), {"padding": "same"}, ValueError, "padding must be"),
        ("same_strided", conv, (x, w), {"padding": "same", "stride": 2}, ValueError,
         "padding='same' needs stride 1"),
        ("empty", conv, (x, w), {"dilation": 3}, ValueError, "output would be empty"),
        ("spatial0", conv, (x[..., :0], w), {"padding": 2}, ValueError, "spatial sizes > 0"),
        ("empty_t", conv_t, (x, wt), {"padding": 9}, ValueError, "output would be empty"),
        ("bias", conv, (x, w, torch.randn(5)), {}, ValueError, r"bias must have shape"),
        ("bias_t", conv_t, (x, wt, torch.randn(4)), {}, ValueError, r"bias must have shape"),
        ("dtype", conv, (x, w.double()), {}, RuntimeError, "weight has dtype"),
        ("dtype_bias", conv_t, (x, wt, torch.randn(3, dtype=F64)), {}, RuntimeError,
         "bias has dtype"),
        ("device", conv, (x, w.to("meta")), {}, RuntimeError, "weight is on meta"),
        ("integer", conv, (x.long(), w.long()), {}, RuntimeError, "input must be a floating"),
        ("output_padding", conv_t, (x, wt), {"stride": 2, "output_padding": 2}, ValueError,
         "output_padding must be smaller"),
        ("output_padding<0", conv_t, (x, wt), {"output_padding": -1}, ValueError,
         "output_padding must be >= 0"),
    ]


@pytest.mark.parametrize("n", [2, 4])
def test_bad_arguments_raise_for_every_backend(n):
    for name, op, args, kwargs, error, match in _bad_calls(n):
        for backend in ndops.available_backends(op, n):
            with ndops.backend(backend), pytest.raises(error, match=f"ndops.{op}: .*{match}"):
                getattr(ndops, op)(*args, **kwargs)


@pytest.mark.parametrize("n", [3, 4])
def test_autocast_casts_like_torchs_convs(n):
    """Inside torch.autocast conv_nd, conv_transpose_nd and conv_bias_act_nd compute in the
    region's dtype (float32 arguments cast, float64 left alone), as torch's convs do; the
    parameters' gradients stay float32. At N = 3 the dtype matches F.conv3d's under autocast."""
    x = torch.randn(1, 2, *(4,) * n)
    w = torch.randn(3, 2, *(3,) * n, requires_grad=True)
    b = torch.randn(3)
    calls = [(lambda x, w, b: ndops.conv_nd(x, w, b, padding=1), w),
             (lambda x, w, b: ndops.conv_bias_act_nd(x, w, b, padding=1, activation="silu"), w),
             (lambda x, w, b: ndops.conv_transpose_nd(x, w, b, stride=2),
              torch.randn(2, 3, *(2,) * n, requires_grad=True))]
    for call, weight in calls:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = call(x, weight, b)
            plain = call(x.double(), weight.double(), b.double())
        expected = call(x.bfloat16(), weight.bfloat16(), b.bfloat16())
        assert out.dtype == torch.bfloat16 and torch.equal(out, expected)
        assert plain.dtype == torch.float64
        out.float().sum().backward()
        assert weight.grad.dtype == torch.float32
    if n == 3:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert F.conv3d(x, w, b).dtype == ndops.conv_nd(x, w, b).dtype
