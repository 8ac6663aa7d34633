"""conv_nd's compiled kernel (csrc/cpu/conv.cpp): equal to the fallback at N = 4, 5 and to torch
at N <= 3 (the gather forced with NDOPS_CONV_GATHER_DIMS), forward and gradients, over random
arguments and dtypes; gathered-dim choices, chunking, layouts, empty sizes, gradcheck and
gradgradcheck, and the kernel's own argument checks (the direct kernel for few input channels:
tests/test_conv_direct.py)."""
import random

import pytest
import torch
import torch.nn.functional as F

import ndops
from ndops import _ext
from ndops.functional.conv import computes_in_float

pytestmark = [
    pytest.mark.skipif(not _ext.has_ext_op("conv_nd"), reason="conv_nd extension not built"),
    pytest.mark.filterwarnings("ignore:Using padding='same'"),
]

F64 = torch.float64


def random_case(rng, n, dtype=F64, max_extra=2):
    """Random (x, w, b, kwargs) for ndops.conv_nd, every kind of padding included."""
    groups = rng.choice([1, 1, 2, 3])
    kernel = [rng.randint(1, 3) for _ in range(n)]
    dilation = tuple(rng.randint(1, 2) for _ in range(n))
    padding = rng.choice(["same", "valid", "int", "int"])
    if padding == "int":
        padding = tuple(rng.randint(0, 2) for _ in range(n))
    stride = 1 if padding == "same" else tuple(rng.randint(1, 3) for _ in range(n))
    size = [d * (k - 1) + 1 + rng.randint(0, max_extra) for k, d in zip(kernel, dilation)]
    x = torch.randn(rng.randint(1, 2), groups * rng.randint(1, 2), *size, dtype=dtype)
    w = torch.randn(groups * rng.randint(1, 2), x.shape[1] // groups, *kernel, dtype=dtype)
    b = torch.randn(w.shape[0], dtype=dtype) if rng.random() < 0.6 else None
    return x, w, b, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


def ran_passes(fn):
    """The ndops::conv_nd::* passes that ran inside fn (torch profiler record_function)."""
    with torch.profiler.profile() as prof:
        fn()
    return {e.name for e in prof.events() if e.name.startswith("ndops::conv_nd::")}


def run(backend, x, w, b, kwargs, grad_output=None, fn=ndops.conv_nd):
    """Output and gradients (x, w, b) of sum(fn(...) * grad_output) on ``backend``."""
    leaves = [t.detach().clone().requires_grad_() for t in (x, w, b) if t is not None]
    with ndops.backend(backend):
        out = fn(leaves[0], leaves[1], leaves[2] if b is not None else None, **kwargs)
    if grad_output is None:
        grad_output = torch.randn(out.shape, dtype=out.dtype,
                                  generator=torch.Generator().manual_seed(1))
    return (out, *torch.autograd.grad(out, leaves, grad_output)), grad_output


def assert_results_close(actual, expected, dtype, msg=""):
    """Outputs and gradients equal; reduced precision relative to each result's magnitude."""
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape and a.dtype == dtype, msg
        if dtype == F64:
            torch.testing.assert_close(a, e, msg=lambda m: f"{msg}\n{m}")
        else:
            scale = e.double().abs().max().clamp_min(1e-6)
            err = (a.double() - e.double()).abs().max() / scale
            assert err < (3e-2 if dtype == torch.bfloat16 else 1e-4), f"{msg}: rel err {err}"


@pytest.mark.parametrize("n,dtype,cases", [(4, F64, 12), (5, F64, 4), (4, torch.float32, 6),
                                           (4, torch.bfloat16, 6), (5, torch.bfloat16, 2)])
def test_matches_fallback(n, dtype, cases):
    rng = random.Random(f"ext {n} {dtype}")
    for _ in range(cases):
        x, w, b, kwargs = random_case(rng, n, dtype)
        expected, grad_output = run("fallback", x, w, b, kwargs)
        if dtype != F64:  # the fallback in float64 is the reference for reduced precision
            expected, _ = run("fallback", *[None if t is None else t.double() for t in (x, w, b)],
                              kwargs, grad_output.double())
        actual, _ = run("ext", x, w, b, kwargs, grad_output)
        assert_results_close(actual, [e.to(dtype) for e in expected], dtype,
                             f"{tuple(x.shape)} {tuple(w.shape)} {kwargs}")


@pytest.mark.parametrize("n,gathered", [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)])
def test_matches_torch_with_any_gathered_dims(n, gathered, monkeypatch):
    monkeypatch.setenv("NDOPS_CONV_GATHER_DIMS", str(gathered))
    rng = random.Random(f"torch {n} {gathered}")
    for _ in range(8):
        x, w, b, kwargs = random_case(rng, n)
        expected, grad_output = run("native", x, w, b, kwargs)
        actual, _ = run("ext", x, w, b, kwargs, grad_output)
        assert_results_close(actual, expected, F64, f"{tuple(x.shape)} {kwargs}")


@pytest.mark.parametrize("gathered", [2, 3])
def test_gathering_more_dims_gives_the_same_result(gathered, monkeypatch):
    rng = random.Random(f"gathered {gathered}")
    for _ in range(4):
        x, w, b, kwargs = random_case(rng, 4)
        expected, grad_output = run("ext", x, w, b, kwargs)
        monkeypatch.setenv("NDOPS_CONV_GATHER_DIMS", str(gathered))
        actual, _ = run("ext", x, w, b, kwargs, grad_output)
        monkeypatch.delenv("NDOPS_CONV_GATHER_DIMS")
        assert_results_close(actual, expected, F64, f"{tuple(x.shape)} {kwargs}")


@pytest.mark.parametrize("dtype", [F64, torch.bfloat16])
@pytest.mark.parametrize("gathered", [1, 2])
def test_chunked_equals_unchunked(dtype, gathered, monkeypatch):
    monkeypatch.setenv("NDOPS_CONV_GATHER_DIMS", str(gathered))
    rng = random.Random(f"chunks {dtype} {gathered}")
    for _ in range(3):
        x, w, b, kwargs = random_case(rng, 4, dtype, max_extra=3)
        whole, grad_output = run("ext", x, w, b, kwargs)
        monkeypatch.setenv("NDOPS_CONV_WORKSPACE_BYTES", "1")  # one position per chunk
        chunked, _ = run("ext", x, w, b, kwargs, grad_output)
        monkeypatch.delenv("NDOPS_CONV_WORKSPACE_BYTES")
        assert_results_close(chunked, whole, dtype, f"{tuple(x.shape)} {kwargs}")


def _layouts():
    """(name, input maker) for inputs that are not contiguous, each (2, 4, 5, 4, 6, 5)."""
    shape = (2, 4, 5, 4, 6, 5)
    return {
        "channels_last": lambda: torch.randn(2, *shape[2:], 4, dtype=F64).movedim(-1, 1),
        "channels_last_sliced": lambda: torch.randn(2, *shape[2:], 6, dtype=F64)
        .movedim(-1, 1)[:, 1:5],
        "lead_strided": lambda: torch.randn(2, 4, 10, *shape[3:], dtype=F64)[:, :, ::2],
        "inner_sliced": lambda: torch.randn(*shape[:-1], 7, dtype=F64)[..., 1:6],
        "transposed_batch": lambda: torch.randn(4, 2, *shape[2:], dtype=F64).transpose(0, 1),
    }


@pytest.mark.parametrize("layout", list(_layouts()))
def test_non_contiguous_inputs(layout):
    x = _layouts()[layout]()
    w = torch.randn(2, 4, 3, 3, 2, 3, dtype=F64).transpose(0, 1)
    b = torch.randn(4, dtype=F64)
    kwargs = dict(stride=(1, 2, 1, 1), padding=(1, 0, 2, 1), dilation=(2, 1, 1, 1), groups=2)
    assert not x.is_contiguous() and not w.is_contiguous()
    expected, grad_output = run("fallback", x.contiguous(), w.contiguous(), b, kwargs)
    actual, _ = run("ext", x, w, b, kwargs, grad_output.transpose(0, 1).contiguous()
                    .transpose(0, 1))
    assert_results_close(actual, expected, F64, layout)
    if layout == "channels_last":  # the output keeps the channels innermost, like torch's
        assert actual[0].stride(1) == 1 and actual[1].stride(1) == 1


def test_expanded_grad_output():
    x = torch.randn(2, 3, 4, 5, 4, 3, dtype=F64)
    w = torch.randn(2, 3, 2, 3, 2, 2, dtype=F64)
    results = []
    for backend in ("fallback", "ext"):
        leaves = [x.clone().requires_grad_(), w.clone().requires_grad_()]
        with ndops.backend(backend):
            ndops.conv_nd(*leaves, padding=1).sum().backward()  # grad_output: stride 0
        results.append([t.grad for t in leaves])
    assert_results_close(results[1], results[0], F64)


def test_zero_batch_and_zero_input_channels():
    w = torch.randn(4, 2, 3, 3, 3, 3, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    with ndops.backend("ext"):
        out = ndops.conv_nd(torch.randn(0, 4, 5, 5, 5, 5), w, b, padding=1, groups=2)
        assert out.shape == (0, 4, 5, 5, 5, 5)
        out.sum().backward()
        assert torch.equal(w.grad, torch.zeros_like(w)) and torch.equal(b.grad, torch.zeros(4))
        x = torch.randn(2, 0, 4, 4, 4, 4, requires_grad=True)
        w0 = torch.randn(3, 0, 3, 1, 3, 3, requires_grad=True)
        out = ndops.conv_nd(x, w0, b[:3], padding=(1, 0, 0, 1))
    assert torch.equal(out, b[:3].detach().reshape(1, 3, 1, 1, 1, 1).expand(2, 3, 4, 4, 2, 4))
    out.sum().backward()
    assert x.grad.shape == x.shape and w0.grad.shape == w0.shape


def test_gradcheck_and_gradgradcheck():
    x = torch.randn(1, 2, 3, 3, 3, 3, dtype=F64, requires_grad=True)
    w = torch.randn(2, 1, 2, 2, 2, 2, dtype=F64, requires_grad=True)
    b = torch.randn(2, dtype=F64, requires_grad=True)
    kwargs = dict(stride=(2, 1, 1, 2), padding=(1, 1, 0, 1), dilation=(1, 2, 1, 1), groups=2)
    with ndops.backend("ext"):
        fn = lambda *t: ndops.conv_nd(*t, **kwargs)  # noqa: E731
        assert torch.autograd.gradcheck(fn, (x, w, b))
        assert torch.autograd.gradgradcheck(fn, (x, w, b), fast_mode=True)


def test_bad_arguments_raise_the_functional_errors():
    x, w = torch.randn(2, 4, *[5] * 5), torch.randn(6, 2, *[3] * 5)
    calls = [((x, w), {"groups": 3}, ValueError, "groups=3 must divide in_channels"),
             ((x, w), {"groups": 2, "stride": 0}, ValueError, "stride must be > 0"),
             ((x, w), {"groups": 2, "padding": -1}, ValueError, "padding must be >= 0"),
             ((x, w, torch.randn(5)), {"groups": 2}, ValueError, "bias must have shape"),
             ((x, w.double()), {"groups": 2}, RuntimeError, "weight has dtype"),
             ((x, w), {"groups": 2, "dilation": 3}, ValueError, "output would be empty")]
    for args, kwargs, error, match in calls:
        with ndops.backend("ext"), pytest.raises(error, match=f"ndops.conv_nd: .*{match}"):
            ndops.conv_nd(*args, **kwargs)


def test_the_kernel_checks_direct_calls(monkeypatch):
    x, w = torch.randn(1, 8, 4, 4, 4, 4), torch.randn(3, 8, 3, 3, 3, 3)
    ones = [1, 1, 1, 1]
    with pytest.raises(RuntimeError, match="stride and dilation must have 4 entries"):
        torch.ops.ndops.conv_nd(x, w, None, [1, 1, 1], ones, ones, 1)
    with pytest.raises(RuntimeError, match="padding_mode must be 'zeros'"):
        torch.ops.ndops.conv_nd(x, w, None, ones, ones, ones, 1, "constant")
    with pytest.raises(RuntimeError, match="reflect padding must be smaller"):
        torch.ops.ndops.conv_nd(x, w, None, ones, [4] * 4, ones, 1, "reflect")
    with pytest.raises(RuntimeError, match="circular padding must be at most"):
        torch.ops.ndops.conv_nd(x, w, None, ones, [0, 5] * 4, ones, 1, "circular")
    with pytest.raises(RuntimeError, match="bias must have shape"):
        torch.ops.ndops.conv_nd(x, w, torch.randn(2), ones, ones, ones, 1)
    with pytest.raises(RuntimeError, match="output would be empty"):
        torch.ops.ndops.conv_nd(x, w, None, ones, [0] * 4, [3] * 4, 1)
    with pytest.raises(RuntimeError, match="grad_output has shape"):
        torch.ops.ndops._conv_nd_backward(torch.randn(1, 3, 4, 4, 4, 3), x, w, ones, ones,
                                          ones, 1, [True, True, False])
    monkeypatch.setenv("NDOPS_CONV_GATHER_DIMS", "two")
    with pytest.raises(RuntimeError, match="NDOPS_CONV_GATHER_DIMS must be an integer"):
        torch.ops.ndops.conv_nd(x, w, None, ones, ones, ones, 1)


def padded_reference(x, w, b, stride, pairs, dilation, groups, mode):
    """conv with (before, after) pairs and a padding mode: ndops.pad_nd, then a conv without
    padding (float64 fallback)."""
    pad = [p for d in reversed(range(len(stride))) for p in pairs[2 * d:2 * d + 2]]
    with ndops.backend("fallback"):
        padded = ndops.pad_nd(x, pad, mode="constant" if mode == "zeros" else mode)
        return ndops.conv_nd(padded, w, b, stride, 0, dilation, groups)


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("n,gathered", [(4, 1), (4, 2), (5, 2), (3, 0), (2, 1)])
def test_padding_modes_and_pairs(mode, n, gathered, monkeypatch):
    monkeypatch.setenv("NDOPS_CONV_GATHER_DIMS", str(gathered))
    rng = random.Random(f"modes {mode} {n} {gathered}")
    for _ in range(3 if n < 5 else 2):
        x, w, b, kwargs = random_case(rng, n, max_extra=3)
        size = x.shape[2:]
        pairs = [rng.randint(0, min(2, s - 1)) for s in size for _ in range(2)]
        stride, dilation, groups = [rng.randint(1, 2) for _ in size], kwargs["dilation"], \
            kwargs["groups"]
        fn = lambda x, w, b: torch.ops.ndops.conv_nd(  # noqa: E731
            x, w, b, stride, pairs, dilation, groups, mode)
        ref = lambda x, w, b: padded_reference(  # noqa: E731
            x, w, b, stride, pairs, dilation, groups, mode)
        expected, grad_output = run(None, x, w, b, {}, fn=ref)
        actual, _ = run(None, x, w, b, {}, grad_output, fn=fn)
        assert_results_close(actual, expected, F64, f"{mode} {tuple(x.shape)} {pairs}")


def test_padding_mode_gradcheck():
    x = torch.randn(1, 2, 3, 4, 3, 3, dtype=F64, requires_grad=True)
    w = torch.randn(2, 2, 2, 3, 2, 2, dtype=F64, requires_grad=True)
    fn = lambda x, w: torch.ops.ndops.conv_nd(  # noqa: E731
        x, w, None, [1, 2, 1, 1], [1, 2, 0, 1, 1, 1, 2, 0], [1, 1, 2, 1], 1, "reflect")
    assert torch.autograd.gradcheck(fn, (x, w), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x, w), fast_mode=True)


def test_native_conv3d_agrees_at_n3_for_bfloat16(monkeypatch):
    monkeypatch.setenv("NDOPS_CONV_GATHER_DIMS", "2")
    x = torch.randn(2, 4, 7, 6, 5, dtype=torch.bfloat16)
    w = torch.randn(6, 2, 3, 3, 2, dtype=torch.bfloat16)
    with ndops.backend("ext"):
        out = ndops.conv_nd(x, w, None, padding=1, groups=2)
    expected = F.conv3d(x.double(), w.double(), None, padding=1, groups=2)
    assert (out.double() - expected).abs().max() / expected.abs().max() < 2e-2


ACTIVATIONS = {  # name: (torch reference, negative_slope)
    "none": (lambda z, slope: z, 0.01),
    "relu": (lambda z, slope: F.relu(z), 0.01),
    "leaky_relu": (lambda z, slope: F.leaky_relu(z, slope), 0.2),
    "leaky_relu_negative": (lambda z, slope: F.leaky_relu(z, slope), -0.3),
    "silu": (lambda z, slope: F.silu(z), 0.01),
    "gelu": (lambda z, slope: F.gelu(z), 0.01),
    "gelu_tanh": (lambda z, slope: F.gelu(z, approximate="tanh"), 0.01),
}


def bias_act(activation, slope, pairs, mode):
    """conv_bias_act_nd's output as a function of (x, w, b) for the random cases' kwargs."""
    def call(x, w, b, stride, dilation, groups, **_):
        n = w.dim() - 2
        stride = stride if isinstance(stride, tuple) else (stride,) * n
        return torch.ops.ndops.conv_bias_act_nd(x, w, b, stride, pairs, dilation, groups,
                                                activation, slope, mode)[0]
    return call


def bias_act_reference(activation, slope, pairs, mode):
    def call(x, w, b, stride, dilation, groups, **_):
        n = w.dim() - 2
        stride = stride if isinstance(stride, tuple) else (stride,) * n
        z = padded_reference(x, w, b, stride, pairs, dilation, groups, mode)
        return ACTIVATIONS[activation][0](z, slope)
    return call


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("n,gathered,mode", [(4, 1, "zeros"), (4, 2, "circular"),
                                             (2, 0, "zeros"), (3, 0, "reflect")])
def test_conv_bias_act_matches_conv_then_activation(activation, n, gathered, mode, monkeypatch):
    monkeypatch.setenv("NDOPS_CONV_GATHER_DIMS", str(gathered))
    op_activation = activation.replace("_negative", "")
    slope = ACTIVATIONS[activation][1]
    rng = random.Random(f"bias act {activation} {n} {mode}")
    for _ in range(2):
        x, w, b, kwargs = random_case(rng, n, max_extra=3)
        kwargs.pop("padding")
        pairs = [rng.randint(0, min(2, s - 1)) for s in x.shape[2:] for _ in range(2)]
        expected, grad_output = run(None, x, w, b, kwargs,
                                    fn=bias_act_reference(activation, slope, pairs, mode))
        actual, _ = run(None, x, w, b, kwargs, grad_output,
                        fn=bias_act(op_activation, slope, pairs, mode))
        assert_results_close(actual, expected, F64, f"{activation} {tuple(x.shape)} {kwargs}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_conv_bias_act_reduced_precision_channels_last_and_chunks(dtype, monkeypatch):
    x = torch.randn(2, 5, 6, 5, 4, 3, dtype=dtype).movedim(-1, 1)  # channels-last
    w = torch.randn(4, 3, 3, 2, 3, 1, dtype=dtype)
    b = torch.randn(4, dtype=dtype)
    kwargs = dict(stride=(1, 2, 1, 1), dilation=(1, 1, 1, 2), groups=1)
    pairs = [1, 1, 0, 1, 1, 0, 0, 0]
    expected, grad_output = run(None, *[t.double() for t in (x, w, b)], kwargs,
                                fn=bias_act_reference("silu", 0.0, pairs, "zeros"))
    for budget in (None, "1"):
        if budget:
            monkeypatch.setenv("NDOPS_CONV_WORKSPACE_BYTES", budget)
        actual, _ = run(None, x, w, b, kwargs, grad_output.to(dtype),
                        fn=bias_act("silu", 0.0, pairs, "zeros"))
        assert_results_close(actual, [e.to(dtype) for e in expected], dtype, f"{budget}")


def _adjoint_cases(dtype):
    """(fn, x, w, b, kwargs, reference fn) with stride 1 and zero padding within the dilated
    kernel: groups, dilation, 'same' with an even kernel (unequal sides), (before, after) pairs
    with a fused activation, a channels-last input, conv_transpose_nd with output_padding."""
    x = torch.randn(2, 4, 5, 4, 6, 3, dtype=dtype)
    yield (ndops.conv_nd, x.movedim(1, -1).contiguous().movedim(-1, 1),
           torch.randn(6, 2, 3, 2, 3, 1, dtype=dtype), None,
           dict(padding="same", dilation=(1, 2, 1, 1), groups=2), ndops.conv_nd)
    pairs = [1, 1, 0, 1, 2, 0, 0, 0]
    kwargs = dict(stride=(1, 1, 1, 1), dilation=(1, 1, 1, 2), groups=1)
    yield (bias_act("silu", 0.0, pairs, "zeros"), x, torch.randn(3, 4, 3, 2, 3, 1, dtype=dtype),
           torch.randn(3, dtype=dtype), kwargs, bias_act_reference("silu", 0.0, pairs, "zeros"))
    transposed = dict(stride=1, padding=(1, 0, 1, 0), output_padding=(1, 0, 0, 0), groups=2,
                      dilation=(2, 1, 1, 1))
    yield (ndops.conv_transpose_nd, x, torch.randn(4, 3, 2, 1, 3, 2, dtype=dtype),
           torch.randn(6, dtype=dtype), transposed, ndops.conv_transpose_nd)


@pytest.mark.parametrize("dtype", [F64, torch.float32, torch.bfloat16])
def test_stride_one_input_gradient_is_the_adjoint_conv(dtype):
    """On the CPU, in float32 and float64, the input gradient of a stride-1 zero-padded conv
    (conv_transpose_nd's forward at stride 1 too) is the forward of the adjoint conv: no
    scatter of a gathered gradient. bfloat16, a stride of 2 or another padding mode keeps the
    scatter (bfloat16 runs as float32 on CPUs without bfloat16 arithmetic)."""
    adjoint = dtype != torch.bfloat16 or computes_in_float(dtype)
    for fn, x, w, b, kwargs, reference in _adjoint_cases(dtype):
        expected, grad_output = run("fallback", *[None if t is None else t.double()
                                                  for t in (x, w, b)], kwargs, fn=reference)
        results = []
        passes = ran_passes(lambda: results.extend(
            run("ext", x, w, b, kwargs, grad_output.to(dtype), fn=fn)[0]))
        assert_results_close(results, [e.to(dtype) for e in expected], dtype, f"{kwargs}")
        assert ("ndops::conv_nd::scatter_taps" in passes) != adjoint, kwargs
        assert (results[1].stride(1) == 1) == (x.stride(1) == 1)  # the input's layout
    w = torch.randn(3, 4, 3, 3, 3, 1, dtype=dtype)
    circular = dict(stride=(1, 1, 1, 1), dilation=(1, 1, 1, 1), groups=1)
    for fn, kwargs in [(ndops.conv_nd, dict(stride=(1, 2, 1, 1), padding=1)),
                       (bias_act("none", 0.0, [1] * 8, "circular"), circular)]:
        passes = ran_passes(lambda: run("ext", x, w, None, kwargs, fn=fn))
        assert "ndops::conv_nd::scatter_taps" in passes, kwargs


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_without_cpu_support_runs_in_float32(dtype):
    """On a CPU without bfloat16 / float16 arithmetic (oneDNN's convs in those dtypes are then
    reference loops) conv_nd, conv_bias_act_nd and conv_transpose_nd run in float32: outputs
    and gradients are the float32 results of the same values, rounded once. (With an
    activation whose derivative reads the pre-activation, that is saved in the input's dtype:
    relu here, whose derivative rounding does not change.)"""
    if not computes_in_float(dtype):
        pytest.skip(f"this CPU computes {dtype} convs natively")
    x = torch.randn(2, 3, 5, 4, 6, 3).to(dtype)
    b = torch.randn(4).to(dtype)
    pairs = [1, 1, 0, 1, 2, 0, 0, 0]
    strided = dict(stride=(1, 2, 1, 1), dilation=(1, 1, 1, 2), groups=1)
    transposed = dict(stride=(2, 1, 1, 1), padding=(1, 0, 1, 0))
    for fn, w, kwargs in [(ndops.conv_nd, torch.randn(4, 3, 3, 2, 3, 1), dict(padding="same")),
                          (bias_act("relu", 0.0, pairs, "zeros"), torch.randn(4, 3, 3, 2, 3, 1),
                           strided),
                          (ndops.conv_transpose_nd, torch.randn(3, 4, 2, 1, 3, 2), transposed)]:
        w = w.to(dtype)
        actual, grad_output = run("ext", x, w, b, kwargs, fn=fn)
        expected, _ = run("ext", x.float(), w.float(), b.float(), kwargs, grad_output.float(),
                          fn=fn)
        for a, e in zip(actual, expected):
            assert a.dtype == dtype and torch.equal(a, e.to(dtype)), kwargs


def test_reduced_precision_goes_compiled_at_n3_without_cpu_support():
    """At N <= 3 bfloat16 / float16 convs on CPUs without that arithmetic default to the
    compiled kernel (torch's own run oneDNN's reference loops there); float32 stays torch's."""
    x, w = torch.randn(2, 8, 6, 6, 6), torch.randn(8, 8, 3, 3, 3)
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        want = "ext" if computes_in_float(dtype) else "native"
        call = dict(input=x.to(dtype), weight=w.to(dtype), stride=(1,) * 3, dilation=(1,) * 3)
        assert ndops._backend.choose("conv_nd", 3, "cpu", call=call) == want, dtype
        for op in ("conv_transpose_nd", "conv_bias_act_nd"):
            assert ndops._backend.choose(op, 3, "cpu", call=dict(input=x.to(dtype))) == want, op
    assert not computes_in_float(torch.float32) and not computes_in_float(F64)


@pytest.mark.parametrize("activation,slope", [("gelu", 0.01), ("silu", 0.01),
                                              ("gelu_tanh", 0.01), ("leaky_relu", -0.3),
                                              ("relu", 0.01)])
def test_conv_bias_act_gradcheck_and_gradgradcheck(activation, slope):
    x = torch.randn(1, 2, 3, 3, 3, 2, dtype=F64, requires_grad=True)
    w = torch.randn(2, 2, 2, 2, 2, 2, dtype=F64, requires_grad=True)
    b = torch.randn(2, dtype=F64, requires_grad=True)
    def fn(x, w, b):
        out, pre = torch.ops.ndops.conv_bias_act_nd(x, w, b, [1, 2, 1, 1], [1, 0, 1, 1],
                                                    [1, 1, 2, 1], 1, activation, slope)
        return out + 0.5 * pre.sum()  # the pre-activation is differentiable too
    assert torch.autograd.gradcheck(fn, (x, w, b), fast_mode=True)
    assert torch.autograd.gradgradcheck(fn, (x, w, b), fast_mode=True)


def test_conv_bias_act_rejects_unknown_activations():
    x, w = torch.randn(1, 2, 3, 3, 3, 3), torch.randn(2, 2, 2, 2, 2, 2)
    with pytest.raises(RuntimeError, match="activation must be 'none'"):
        torch.ops.ndops.conv_bias_act_nd(x, w, None, [1] * 4, [1] * 4, [1] * 4, 1, "tanh")


def transpose_case(rng, n, dtype=F64):
    """Random (x, w, b, kwargs) for conv_transpose_nd, output_padding up to max(s, d) - 1."""
    groups = rng.choice([1, 2])
    kernel = [rng.randint(1, 3) for _ in range(n)]
    stride = tuple(rng.randint(1, 2) for _ in range(n))
    dilation = tuple(rng.randint(1, 2) for _ in range(n))
    output_padding = tuple(rng.randint(0, max(s, d) - 1) for s, d in zip(stride, dilation))
    size = [rng.randint(1, 3) for _ in range(n)]
    room = [(i - 1) * s + d * (k - 1) + q for i, s, d, k, q in
            zip(size, stride, dilation, kernel, output_padding)]
    padding = tuple(rng.randint(0, min(1, r // 2)) for r in room)
    x = torch.randn(rng.randint(1, 2), groups * rng.randint(1, 2), *size, dtype=dtype)
    w = torch.randn(x.shape[1], rng.randint(1, 2), *kernel, dtype=dtype)
    b = torch.randn(w.shape[1] * groups, dtype=dtype) if rng.random() < 0.6 else None
    return x, w, b, dict(stride=stride, padding=padding, output_padding=output_padding,
                         groups=groups, dilation=dilation)


@pytest.mark.parametrize("n,dtype,cases", [(4, F64, 10), (5, F64, 3), (4, torch.float32, 4),
                                           (4, torch.bfloat16, 4)])
def test_conv_transpose_matches_fallback(n, dtype, cases):
    rng = random.Random(f"transpose {n} {dtype}")
    for _ in range(cases):
        x, w, b, kwargs = transpose_case(rng, n, dtype)
        expected, grad_output = run("fallback", *[None if t is None else t.double()
                                                  for t in (x, w, b)], kwargs,
                                    fn=ndops.conv_transpose_nd)
        actual, _ = run("ext", x, w, b, kwargs, grad_output.to(dtype),
                        fn=ndops.conv_transpose_nd)
        assert_results_close(actual, [e.to(dtype) for e in expected], dtype,
                             f"{tuple(x.shape)} {tuple(w.shape)} {kwargs}")


def test_conv_transpose_layouts_chunks_and_gradgradcheck(monkeypatch):
    x = torch.randn(1, 3, 3, 2, 3, 2, 4, dtype=F64).movedim(-1, 1)  # channels-last, N = 5
    w = torch.randn(4, 1, 2, 3, 2, 1, 2, dtype=F64)
    kwargs = dict(stride=(2, 1, 1, 2, 1), padding=(1, 0, 1, 0, 0),
                  output_padding=(1, 0, 0, 1, 0), groups=2, dilation=(1, 2, 1, 1, 1))
    expected, grad_output = run("fallback", x.contiguous(), w, None, kwargs,
                                fn=ndops.conv_transpose_nd)
    monkeypatch.setenv("NDOPS_CONV_WORKSPACE_BYTES", "1")
    actual, _ = run("ext", x, w, None, kwargs, grad_output, fn=ndops.conv_transpose_nd)
    assert_results_close(actual, expected, F64)
    assert actual[0].stride(1) == 1  # channels-last in, channels-last out
    small = dict(stride=(2, 1, 1, 1), padding=(1, 0, 0, 1), output_padding=(1, 0, 0, 0),
                 groups=1, dilation=(1, 1, 2, 1))
    xs = torch.randn(1, 2, 2, 2, 2, 2, dtype=F64, requires_grad=True)
    ws = torch.randn(2, 1, 2, 1, 2, 2, dtype=F64, requires_grad=True)
    bs = torch.randn(1, dtype=F64, requires_grad=True)
    with ndops.backend("ext"):
        fn = lambda *t: ndops.conv_transpose_nd(*t, **small)  # noqa: E731
        assert torch.autograd.gradgradcheck(fn, (xs, ws, bs), fast_mode=True)


def _default_backend(x, w, stride, dilation=None):
    """ndops' default backend for conv_nd(x, w, stride=stride, dilation=dilation)."""
    n = w.dim() - 2
    call = dict(input=x, weight=w, stride=stride, dilation=dilation or (1,) * n)
    return ndops._backend.choose("conv_nd", n, x.device, call=call)


def test_default_hands_strided_stems_to_the_fallback():
    """Strided convs of <= 2 input channels per group go to the fallback at N >= 4 unless a
    backend is forced; weights larger than the input stay compiled (measured in
    _conv_order's docstring)."""
    x = torch.randn(1, 64, 3, 3, 3, 3)
    one = (1,) * 4
    assert _default_backend(x, torch.randn(64, 64, 3, 3, 3, 3), one) == "ext"
    stem = torch.randn(1, 1, 12, 12, 12, 12)
    w = torch.randn(8, 1, 3, 3, 3, 3)
    assert _default_backend(stem, w, (2,) * 4) == "fallback"
    assert _default_backend(stem, w, one) == "ext"
    wide = torch.randn(1, 8, 12, 12, 12, 12)
    assert _default_backend(wide, torch.randn(8, 8, 3, 3, 3, 3), (2,) * 4) == "ext"
    with ndops.backend("ext"):  # a forced backend is always honoured
        assert _default_backend(stem, w, (2,) * 4) == "ext"


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"),
                    reason="the direct kernel needs AVX2")
def test_default_takes_the_direct_kernel_for_2d_3d_first_layers():
    """At N = 2, 3 one-channel float32 convs with unit stride and dilation and >= 2^19
    multiply-adds run the compiled direct kernel by default (faster than torch's, measured in
    _direct_beats_native's docstring); smaller, strided, dilated, multi-channel, float64 and 1-D
    convs stay with torch. The default result equals torch's."""
    x, w = torch.randn(2, 1, 24, 24, 24), torch.randn(16, 1, 3, 3, 3)  # 12M multiply-adds
    ones = (1, 1, 1)
    assert _default_backend(x, w, ones) == "ext"
    x2 = torch.randn(2, 1, 64, 64)  # 1.2M multiply-adds
    assert _default_backend(x2, w[:, :, 0], ones[:2]) == "ext"
    assert _default_backend(x[:1, :, :8, :8, :8], w, ones) == "native"
    assert _default_backend(x, w, (2, 1, 1)) == "native"
    assert _default_backend(x, w, ones, (1, 2, 1)) == "native"
    assert _default_backend(x.double(), w.double(), ones) == "native"
    assert _default_backend(x.repeat(1, 2, 1, 1, 1), w.repeat(1, 2, 1, 1, 1), ones) == "native"
    assert _default_backend(x.flatten(2), w[:, :, 0, 0], ones[:1]) == "native"
    with ndops.backend("native"):
        assert _default_backend(x, w, ones) == "native"
    b = torch.randn(16)
    torch.testing.assert_close(ndops.conv_nd(x, w, b, padding=1), F.conv3d(x, w, b, padding=1))
    assert ndops.conv_nd(x[:0], w, b, padding=1).shape == (0, 16, 24, 24, 24)


@pytest.mark.parametrize("op", ["conv_nd", "conv_transpose_nd"])
@pytest.mark.parametrize("channel_major", [True, False])
@pytest.mark.parametrize("dtype", [F64, torch.float32])
def test_both_orders_of_the_gathered_channels(op, channel_major, dtype):
    """Where the gathered buffer is under a quarter of the weight, its channels are reordered
    to (channel, tap) and the weight is a view (no gathered_weight pass); else the weight is
    packed in (tap, channel) order. Both equal the fallback, forward and gradients, with
    groups."""
    if channel_major:
        x = torch.randn(1, 16, 1, 3, 2, 3, dtype=F64)
        w = torch.randn(16, 8, 3, 3, 2, 3, dtype=F64)
    else:
        x = torch.randn(2, 4, 7, 7, 4, 4, dtype=F64)
        w = torch.randn(4, 2, 3, 3, 2, 3, dtype=F64)
    b = torch.randn(w.shape[0] if op == "conv_nd" else 2 * w.shape[1], dtype=F64)
    kwargs = dict(stride=(1, 2, 1, 1), padding=(1, 0, 1, 1), groups=2)
    fn = getattr(ndops, op)
    expected, grad_output = run("fallback", x, w, b, kwargs, fn=fn)
    results = {}
    passes = ran_passes(lambda: results.update(actual=run(
        "ext", x.to(dtype), w.to(dtype), b.to(dtype), kwargs, grad_output.to(dtype), fn=fn)[0]))
    assert ("ndops::conv_nd::gathered_weight" in passes) != channel_major
    assert_results_close(results["actual"], [e.to(dtype) for e in expected], dtype)
