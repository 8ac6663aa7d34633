"""batch_norm_act_nd: every backend against act(F.batch_norm(...)) (torch's batch norm takes any
rank, so torch is the reference at every N) and the brute-force reference: output, running
statistics after the call, gradients, dtypes, layouts, gradcheck; BatchNormNd(activation=...);
argument errors."""
import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ndops
from ndops.nn import BatchNormNd
from helpers.batch_norm import draw_case, run
from reference import norm as ref

F64 = torch.float64
OP = "batch_norm_act_nd"
# torch's own activations: the definition the op must match.
TORCH_ACTIVATIONS = {
    "none": lambda z, slope: z,
    "relu": lambda z, slope: F.relu(z),
    "leaky_relu": F.leaky_relu,
    "silu": lambda z, slope: F.silu(z),
    "gelu": lambda z, slope: F.gelu(z),
    "gelu_tanh": lambda z, slope: F.gelu(z, approximate="tanh"),
}
ACTIVATIONS = list(TORCH_ACTIVATIONS)


def torch_op(activation, slope, batch_norm=F.batch_norm):
    """act(batch_norm(...)) with torch's functions (``batch_norm``: F.batch_norm or ref's)."""
    def fn(x, running_mean, running_var, weight, bias, training, momentum, eps):
        out = batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
        if isinstance(out, tuple):  # the brute-force reference returns the new running stats
            return (TORCH_ACTIVATIONS[activation](out[0], slope), *out[1:])
        return TORCH_ACTIVATIONS[activation](out, slope)
    return fn


def ndops_op(activation, slope):
    def fn(*args):
        return ndops.batch_norm_act_nd(*args, activation, negative_slope=slope)
    return fn


def check_all_backends(case, n, activation, slope, expected_fn, **tolerance):
    expected, grad_output = run(expected_fn, case)
    for name in ndops.available_backends(OP, n):
        with ndops.backend(name):
            actual, _ = run(ndops_op(activation, slope), case, grad_output)
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            torch.testing.assert_close(a, e, **tolerance,
                                       msg=lambda m: f"{name} {activation}: {m}")


@pytest.mark.parametrize("seed", range(36))
def test_matches_torch(seed):
    rng = random.Random(seed)
    n = seed % 6  # N = 0 is (B, C), BatchNorm1d's no-spatial case
    activation, slope = rng.choice(ACTIVATIONS), rng.choice([0.01, 0.2, -0.5])
    case = draw_case(rng, n, max_size=4 if n <= 3 else 3)
    check_all_backends(case, n, activation, slope, torch_op(activation, slope))


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation(activation, training):
    for n in (2, 4):
        case = draw_case(random.Random(n), n)
        case = (*case[:5], training, *case[6:])
        if not training and case[1] is None:
            case = (case[0], torch.zeros(case[0].shape[1], dtype=F64),
                    torch.ones(case[0].shape[1], dtype=F64), *case[3:])
        check_all_backends(case, n, activation, 0.2, torch_op(activation, 0.2))


@pytest.mark.parametrize("n", [4, 5])
def test_matches_brute_force_reference(n):
    for activation in ("relu", "gelu"):
        case = draw_case(random.Random(10 + n), n, max_size=3)
        case = (*case[:5], True, *case[6:])
        check_all_backends(case, n, activation, 0.01,
                           torch_op(activation, 0.01, batch_norm=ref.batch_norm))


@pytest.mark.parametrize("dtype,param_dtype", [(torch.float32, torch.float32),
                                               (torch.bfloat16, torch.bfloat16),
                                               (torch.bfloat16, torch.float32),
                                               (torch.float16, torch.float32)])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "silu", "gelu", "gelu_tanh"])
def test_dtypes(dtype, param_dtype, activation):
    """Each backend in `dtype` against the float64 result for the same (rounded) values."""
    if activation in ("relu", "leaky_relu") and dtype != torch.float32:
        pytest.skip("a half-precision pre-activation near the kink flips the gradient")
    x = (torch.randn(3, 4, 7, 6, 5) * 2 + 1).to(dtype)
    weight, bias = torch.randn(4).to(param_dtype), torch.randn(4).to(param_dtype)
    running = [torch.randn(4).to(param_dtype), (torch.rand(4) + 0.5).to(param_dtype)]
    tolerance = {torch.float32: dict(atol=1e-4, rtol=1e-4),
                 torch.float16: dict(atol=1e-2, rtol=1e-2),
                 torch.bfloat16: dict(atol=4e-2, rtol=4e-2)}[dtype]
    for training in (True, False):
        case64 = (x.double(), *[t.double() for t in running], weight.double(), bias.double(),
                  training, 0.1, 1e-5)
        expected, grad_output = run(torch_op(activation, 0.01), case64)
        for name in ndops.available_backends(OP, 3):
            with ndops.backend(name):
                actual, _ = run(ndops_op(activation, 0.01),
                                (x, *running, weight, bias, training, 0.1, 1e-5),
                                grad_output.to(dtype))
            assert actual[0].dtype == dtype and actual[1].dtype == param_dtype
            for a, e in zip(actual, expected):
                torch.testing.assert_close(a.double(), e, **tolerance,
                                           msg=lambda m: f"{name} training={training}: {m}")


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float32_activation_accuracy(activation):
    """Eval mode with mean 0, var 1, eps 0 makes the pre-activation z = x: the kernels' float
    activation math (no C library calls) against torch in float64, far into the tails."""
    z = torch.cat([torch.linspace(-30, 30, 6001), torch.tensor([0.0, 1e-8, -1e-8])])
    z = z.view(1, 1, -1).requires_grad_()
    expected = TORCH_ACTIVATIONS[activation](z.double(), 0.1)
    (expected_grad,) = torch.autograd.grad(expected, z, torch.ones_like(expected))
    for name in ndops.available_backends(OP, 1):
        with ndops.backend(name):
            out = ndops.batch_norm_act_nd(z, torch.zeros(1), torch.ones(1), eps=0.0,
                                          activation=activation, negative_slope=0.1)
        (grad,) = torch.autograd.grad(out, z, torch.ones_like(out))
        torch.testing.assert_close(out.double(), expected, rtol=4e-6, atol=1e-6)
        torch.testing.assert_close(grad.double(), expected_grad.double(), rtol=4e-6, atol=1e-6)
        with ndops.backend(name):
            nan = ndops.batch_norm_act_nd(torch.full((1, 1, 2), float("nan")), torch.zeros(1),
                                          torch.ones(1), activation=activation)
        assert nan.isnan().all()


@pytest.mark.parametrize("training", [True, False])
def test_large_input_many_pieces_and_channel_groups(training):
    """Channels above the kernel's cache budget and planes cut into many pieces, with a ragged
    tail: (2, 3, 600017) float64 is 9.6 MB per channel."""
    x = torch.randn(2, 3, 600017, dtype=F64) * 3 + 5
    case = (x, torch.randn(3, dtype=F64), torch.rand(3, dtype=F64) + 0.5,
            torch.randn(3, dtype=F64), torch.randn(3, dtype=F64), training, 0.1, 1e-5)
    check_all_backends(case, 1, "silu", 0.01, torch_op("silu", 0.01))


# gradcheck at N = 1..4 for every activation; gradgradcheck at N = 1, 2, 4 for the nonlinear ones.
DERIVATIVE_CHECKS = (
    [(torch.autograd.gradcheck, n, a) for n in (1, 2, 3, 4) for a in ACTIVATIONS]
    + [(torch.autograd.gradgradcheck, n, a) for n in (1, 2, 4) for a in ACTIVATIONS if a != "none"])


@pytest.mark.parametrize("check,n,activation", DERIVATIVE_CHECKS,
                         ids=[f"{c.__name__}-{n}-{a}" for c, n, a in DERIVATIVE_CHECKS])
def test_derivatives(check, n, activation):
    # Inputs drawn once; relu's kink at 0 is never within gradcheck's step of a pre-activation.
    x = torch.randn(2, 2, *[3, 2, 2, 2][:n], dtype=F64, requires_grad=True)
    weight = torch.randn(2, dtype=F64, requires_grad=True)
    bias = torch.randn(2, dtype=F64, requires_grad=True)
    for name in ndops.available_backends(OP, n):
        for training in (True, False):
            def fn(x, weight, bias):
                running = torch.zeros(2, dtype=F64), torch.ones(2, dtype=F64)
                return ndops.batch_norm_act_nd(x, *running, weight, bias, training,
                                               activation=activation, negative_slope=0.1)
            with ndops.backend(name):
                assert check(fn, (x, weight, bias), fast_mode=True)


def test_third_derivative_raises_for_ext():
    if "ext" not in ndops.available_backends(OP, 2):
        pytest.skip("extension not built")
    x = torch.randn(2, 2, 3, 3, dtype=F64, requires_grad=True)
    with ndops.backend("ext"):
        y = ndops.batch_norm_act_nd(x, None, None, training=True, activation="silu")
    (g,) = torch.autograd.grad(y.pow(2).sum(), x, create_graph=True)
    torch.autograd.grad(g.pow(2).sum(), x, retain_graph=True)  # second derivatives: fine
    with pytest.raises(RuntimeError, match="third and higher"):  # a graph of them: not
        torch.autograd.grad(g.pow(2).sum(), x, create_graph=True)


@pytest.mark.parametrize("n", [1, 4])
def test_zero_batch(n):
    x = torch.randn(0, 3, *[2] * n, requires_grad=True)
    weight, bias = torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    for name in ndops.available_backends(OP, n):
        running_mean, running_var = torch.zeros(3), torch.ones(3)
        with ndops.backend(name):
            out = ndops.batch_norm_act_nd(x, running_mean, running_var, weight, bias,
                                          training=True, activation="relu")
        assert out.shape == x.shape
        grads = torch.autograd.grad(out.sum(), (x, weight, bias))
        assert grads[0].shape == x.shape and not grads[1].any() and not grads[2].any()
        # like torch: an empty batch leaves the running stats alone
        assert torch.equal(running_mean, torch.zeros(3))
        assert torch.equal(running_var, torch.ones(3))


@pytest.mark.parametrize("layout", ["transposed", "sliced", "channels_last", "expanded_grad"])
def test_non_contiguous(layout):
    base = torch.randn(4, 3, 5, 6, 4, dtype=F64)
    x = {"transposed": base.transpose(0, 1).transpose(0, 1).transpose(2, 4),
         "sliced": base[:, :, 1:, ::2],
         "channels_last": base.to(memory_format=torch.channels_last_3d),
         "expanded_grad": base}[layout]
    grad_output = (torch.ones(()).expand(x.shape) if layout == "expanded_grad"
                   else torch.randn(x.shape, dtype=F64).transpose(0, 1).contiguous()
                   .transpose(0, 1))
    for training in (True, False):
        case = (x, torch.randn(3, dtype=F64), torch.rand(3, dtype=F64) + 0.5,
                torch.randn(3, dtype=F64), torch.randn(3, dtype=F64), training, 0.1, 1e-5)
        expected, _ = run(torch_op("gelu", 0.01), case, grad_output.contiguous())
        for name in ndops.available_backends(OP, 3):
            with ndops.backend(name):
                actual, _ = run(ndops_op("gelu", 0.01), case, grad_output)
            for a, e in zip(actual, expected):
                torch.testing.assert_close(a, e)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_unbatched(n):
    x = torch.randn(3, *[4] * n, dtype=F64)
    expected = F.silu(F.batch_norm(x.unsqueeze(0), None, None, training=True))[0]
    for name in ndops.available_backends(OP, n):
        with ndops.backend(name):
            out = ndops.batch_norm_act_nd(x, None, None, training=True, activation="silu",
                                          spatial_dims=n)
        torch.testing.assert_close(out, expected)


def test_same_result_for_any_thread_count():
    if "ext" not in ndops.available_backends(OP, 3):
        pytest.skip("extension not built")
    x = torch.randn(2, 3, 40, 30, 20)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2, 3):
            torch.set_num_threads(count)
            with ndops.backend("ext"):
                y = ndops.batch_norm_act_nd(x.requires_grad_(), None, None, training=True,
                                            activation="gelu")
            results.append([y, *torch.autograd.grad(y, x, torch.ones_like(y))])
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        assert all(torch.equal(a, b) for a, b in zip(results[0], other))


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "gelu"])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_module_matches_torch_batch_norm_plus_activation(n, activation, momentum):
    torch_norm = getattr(nn, f"BatchNorm{n}d")(3, momentum=momentum).double()
    norm = BatchNormNd(3, momentum=momentum, spatial_dims=n, activation=activation,
                       negative_slope=0.2).double()
    with torch.no_grad():
        for module in (torch_norm, norm):
            module.weight.copy_(torch.linspace(-1, 2, 3))
            module.bias.copy_(torch.linspace(0.5, -0.5, 3))
    assert list(norm.state_dict()) == list(torch_norm.state_dict())
    for step in range(3):
        if step == 2:
            norm.eval()
            torch_norm.eval()
        x = torch.randn(4, 3, *[5] * n, dtype=F64)
        expected = TORCH_ACTIVATIONS[activation](torch_norm(x), 0.2)
        torch.testing.assert_close(norm(x), expected)
        for key, value in torch_norm.state_dict().items():
            torch.testing.assert_close(norm.state_dict()[key], value)


def test_module_repr_and_errors():
    assert "activation" not in repr(BatchNormNd(3))
    text = repr(BatchNormNd(3, spatial_dims=4, activation="leaky_relu", negative_slope=0.2))
    assert "activation='leaky_relu'" in text and "negative_slope=0.2" in text
    assert "negative_slope" not in repr(BatchNormNd(3, activation="silu"))
    with pytest.raises(ValueError, match="activation must be one of"):
        BatchNormNd(3, activation="tanh")


X = torch.randn(2, 3, 4, 4)
C3 = torch.ones(3)
BAD = [
    (dict(running_mean=torch.zeros(4), running_var=C3), ValueError, "running_mean must have shape"),
    (dict(running_mean=C3, running_var=C3, weight=torch.ones(2)), ValueError,
     "weight must have shape"),
    (dict(running_mean=None, running_var=None), ValueError, "must be given when training=False"),
    (dict(running_mean=C3, running_var=None, training=True), ValueError, "both be given"),
    (dict(input=torch.randn(1, 3, 1, 1), running_mean=None, running_var=None, training=True),
     ValueError, "more than 1 value per channel"),
    (dict(input=X.double(), running_mean=C3, running_var=C3), RuntimeError, "dtype"),
    (dict(input=X.long(), running_mean=C3, running_var=C3), RuntimeError, "floating-point"),
    (dict(running_mean=C3, running_var=C3, momentum=None), ValueError, "momentum"),
    (dict(running_mean=C3, running_var=C3, activation="tanh"), ValueError,
     "activation must be one of"),
    (dict(running_mean=C3, running_var=C3, activation=None), ValueError, "activation"),
    (dict(running_mean=C3, running_var=C3, activation="relu", negative_slope="0.1"), ValueError,
     "negative_slope"),
    (dict(running_mean=C3, running_var=C3, spatial_dims=4), ValueError, "rank 6 or 5"),
]


@pytest.mark.parametrize("name", ndops.BACKENDS)
@pytest.mark.parametrize("kwargs,error,match", BAD)
def test_bad_arguments(name, kwargs, error, match):
    if name not in ndops.available_backends(OP, 2):
        pytest.skip(f"backend {name} not available")
    kwargs = dict(kwargs)
    input = kwargs.pop("input", X)
    with ndops.backend(name), pytest.raises(error, match=match):
        ndops.batch_norm_act_nd(input, **kwargs)


def test_compiled_op_checks_its_arguments():
    """The C++ checks behind the Python ones, for direct torch.ops calls."""
    if not ndops.has_extension():
        pytest.skip("extension not built")
    op = torch.ops.ndops.batch_norm_act_nd
    with pytest.raises(RuntimeError, match="activation must be"):
        op(X, None, None, None, None, True, 0.1, 1e-5, "tanh", 0.0)
    with pytest.raises(RuntimeError, match="must be given when training=False"):
        op(X, None, None, None, None, False, 0.1, 1e-5, "relu", 0.0)
    with pytest.raises(RuntimeError, match="weight must have shape"):
        op(X, None, None, torch.ones(2), None, True, 0.1, 1e-5, "relu", 0.0)
    with pytest.raises(RuntimeError, match="more than 1 value per channel"):
        op(torch.randn(1, 3, 1), None, None, None, None, True, 0.1, 1e-5, "relu", 0.0)
    with pytest.raises(RuntimeError, match="grad_output"):
        torch.ops.ndops._batch_norm_act_nd_backward(X[:1], X, None, None, C3, C3, True, 1e-5,
                                                    "relu", 0.0)
