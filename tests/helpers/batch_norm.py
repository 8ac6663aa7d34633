"""Random batch-norm cases and a forward + gradient run, for batch_norm_nd and
batch_norm_act_nd."""
import torch

F64 = torch.float64


def draw_case(rng, n, max_size=4, dtype=F64):
    """(x, running_mean, running_var, weight, bias, training, momentum, eps)."""
    channels = rng.randint(1, 3)
    x = torch.randn(rng.randint(1, 3), channels, *[rng.randint(1, max_size) for _ in range(n)],
                    dtype=dtype) * 2 + 0.5
    if x.shape[0] * x[0, 0].numel() == 1:
        x = torch.cat([x, x + 1])
    training = rng.random() < 0.6
    stats = not training or rng.random() < 0.7
    running_mean = torch.randn(channels, dtype=dtype) if stats else None
    running_var = torch.rand(channels, dtype=dtype) + 0.5 if stats else None
    weight = torch.randn(channels, dtype=dtype) if rng.random() < 0.6 else None
    bias = torch.randn(channels, dtype=dtype) if rng.random() < 0.6 else None
    momentum = rng.choice([0.1, 0.5, 0.0, 1.0, 0.03])
    eps = rng.choice([1e-5, 1e-3, 0.1])
    return x, running_mean, running_var, weight, bias, training, momentum, eps


def run(fn, case, grad_output=None):
    """fn's output, the running stats after the call and the gradients of every tensor input;
    ``grad_output`` is drawn (seed 1, in float64 then cast) when not given."""
    x, running_mean, running_var, weight, bias, training, momentum, eps = case
    leaves = [t.detach().clone().requires_grad_() if t is not None else None
              for t in (x, weight, bias)]
    stats = [t.clone() if t is not None else None for t in (running_mean, running_var)]
    out = fn(leaves[0], *stats, leaves[1], leaves[2], training, momentum, eps)
    if isinstance(out, tuple):  # the brute-force reference returns the new running stats
        out, *stats = out
    if grad_output is None:
        grad_output = torch.randn(out.shape, generator=torch.Generator().manual_seed(1),
                                  dtype=F64).to(out.dtype)
    present = [t for t in leaves if t is not None]
    grads = torch.autograd.grad(out, present, grad_output)
    return [out, *[s for s in stats if s is not None], *grads], grad_output
