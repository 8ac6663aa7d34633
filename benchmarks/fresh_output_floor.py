"""How close the memory-bound rows of issue 3 come to what the machine allows: each op's time
against its *floor*, the time of the same memory traffic without the op, measured in the same
run and interleaved with it.

    THP_MEM_ALLOC_ENABLE=1 python benchmarks/fresh_output_floor.py [--rounds 5]

(``--scale tiny``: small tensors whose numbers mean nothing, for the tests.)

The floor of a pass writes every fresh output the op returns (``torch.empty(...).fill_``, so
it pays the same first-touch page clearing) and reads every input the op must read
(``tensor.sum()`` over an existing tensor of that size). ``% limit`` is the bytes the report
counts (``ndops.bench.families``) over the copy bandwidth (``ndops.bench.limits``), as in
``ndops-bench``; ``floor % limit`` is the same for the floor: a target above it cannot be met
by any kernel that returns fresh outputs on this machine.
"""
import argparse
import os
import time

import torch

import ndops
from ndops.bench.limits import measure_limits

MiB = 2 ** 20


def _fastest(call, repeats):
    call()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def _floor_call(fresh, read):
    """Fill fresh buffers of the given element counts and sum existing ones of the others."""
    sources = [torch.ones(n) for n in read]

    def call():
        for n in fresh:
            torch.empty(n).fill_(1.0)
        for t in sources:
            t.sum()
    return call


_EDGES = {"normal": (32, 16, 24), "tiny": (4, 2, 3)}  # pooled, upsampled, normalized edges


def _rows(scale):
    """(name, op call, fresh element counts, read element counts, bytes the report counts)."""
    pool_edge, up_edge, bn_edge = _EDGES[scale]
    pool_x = torch.randn(2, 32, *(pool_edge,) * 4)
    big, small = pool_x.numel(), pool_x.numel() // 16
    up_x = torch.randn(2, 32, *(up_edge,) * 4)
    bn_x = torch.randn(2, 32, *(bn_edge,) * 4)
    c = bn_x.shape[1]
    bn_args = (torch.zeros(c), torch.ones(c), torch.randn(c), torch.randn(c), True, 0.1, 1e-5,
               "relu")

    def forward_backward(fn, x):
        x = x.detach().requires_grad_()
        out = fn(x)
        grad = torch.randn_like(out)
        return lambda: torch.autograd.grad(fn(x), x, grad)

    def no_grad(fn, x):
        def call():
            with torch.no_grad():
                return fn(x)
        return call

    max_pool = lambda x: ndops.max_pool_nd(x, 2)  # noqa: E731
    avg_pool = lambda x: ndops.avg_pool_nd(x, 2)  # noqa: E731
    upsample = lambda x: ndops.interpolate_nd(x, scale_factor=2, mode="linear")  # noqa: E731
    bn_relu = lambda x: ndops.batch_norm_act_nd(x, *bn_args)  # noqa: E731
    f32 = 4
    return [
        ("max_pool fwd", no_grad(max_pool, pool_x), [small], [big], (big + small) * f32),
        # indices: 8 bytes per output element, written forward and read backward
        ("max_pool fwd+bwd", forward_backward(max_pool, pool_x), [small, 2 * small, big],
         [big, small, 2 * small], 2 * (big + 3 * small) * f32),
        ("avg_pool fwd+bwd", forward_backward(avg_pool, pool_x), [small, big], [big, small],
         2 * (big + small) * f32),
        ("upsample fwd", no_grad(upsample, up_x), [big], [small], (big + small) * f32),
        ("upsample fwd+bwd", forward_backward(upsample, up_x), [big, small], [small, big],
         2 * (big + small) * f32),
        # as the report counts it: x read twice, y written, grad_output read, grad_input written
        ("bn+relu fwd+bwd", forward_backward(bn_relu, bn_x), [bn_x.numel()] * 2,
         [bn_x.numel()] * 3, 5 * bn_x.numel() * f32),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (best kept)")
    parser.add_argument("--repeats", type=int, default=5, help="calls per round")
    parser.add_argument("--scale", choices=sorted(_EDGES), default="normal")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    copy_gbps = measure_limits(scale=args.scale)["copy"]["gbps"]
    print(f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', 'unset')}, "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', 'unset')}, 2 threads, "
          f"copy bandwidth {copy_gbps:.1f} GB/s")
    print("| row | ndops ext ms | floor ms | ext / floor | % limit | floor % limit |")
    print("|---|---|---|---|---|---|")
    with ndops.backend("ext"):
        for name, call, fresh, read, counted in _rows(args.scale):
            floor = _floor_call(fresh, read)
            op_s = floor_s = float("inf")
            for _ in range(args.rounds):
                op_s = min(op_s, _fastest(call, args.repeats))
                floor_s = min(floor_s, _fastest(floor, args.repeats))
            print(f"| {name} | {op_s * 1e3:.1f} | {floor_s * 1e3:.1f} | {op_s / floor_s:.2f} | "
                  f"{counted / op_s / 1e9 / copy_gbps:.0%} | "
                  f"{counted / floor_s / 1e9 / copy_gbps:.0%} |")


if __name__ == "__main__":
    main()
