"""``python -m ndops``: check every op at N = 1..5 against a reference and time each backend.

The reference is torch's own op in float64 where torch has it (N <= 3; batch norm at any N),
else ndops' fallback in float64 — a check of float32 accuracy and of the backends against each
other; the independent brute-force references for N >= 4 live in the test suite. Each backend
runs the same float32 call; the error is max|out - ref| / max|ref|.

    python -m ndops                  # every op, N = 1..5
    python -m ndops --ops conv_nd pad_nd --dims 4 5 --threads 2
"""
import argparse
import statistics
import sys
import time

import torch

import ndops
from ndops._cases import BUILDERS, make_case

# float32 against a float64 reference: tolerated relative error
_TOLERANCE = 1e-4


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _time_ms(fn, budget_s=0.2, max_reps=25):
    fn()  # warm-up
    times = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < budget_s and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _check(op, n):
    """Rows (op, N, backend, rel. error, ms, ok) for one op at one N."""
    torch.manual_seed(0)
    case = make_case(op, n, dtype=torch.float64)
    backends = ndops.available_backends(op, n)
    reference = "native" if "native" in backends else "fallback"
    with ndops.backend(reference):
        ref = _first(case.run()).double()
    tensors32 = tuple(t.float() if t.is_floating_point() else t for t in case.tensors)
    scale = ref.abs().max().item() or 1.0
    rows = []
    for name in backends:
        with ndops.backend(name):
            out = _first(case.run(tensors32))
            err = (out.double() - ref).abs().max().item() / scale if ref.numel() else 0.0
            ms = _time_ms(lambda: case.run(tensors32))
        rows.append((op, n, name, err, ms, err <= _TOLERANCE))
    return f"ref: {reference} f64 | {case.describe()}", rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ndops", description=__doc__.splitlines()[0])
    parser.add_argument("--ops", nargs="+", choices=sorted(BUILDERS), default=list(BUILDERS))
    parser.add_argument("--dims", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    print(f"ndops {ndops.__version__} | torch {torch.__version__} | threads "
          f"{torch.get_num_threads()} | extension: "
          f"{'built' if ndops.has_extension() else f'not loaded ({ndops.load_error()})'}")
    print("reference: torch's op in float64 where it exists, else ndops' fallback in float64; "
          f"backends run float32; ok = rel. error <= {_TOLERANCE:g}\n")
    header = f"{'op':<22}{'N':>2}  {'backend':<9}{'rel. error':>11}{'ms':>10}  ok  case"
    print(header)
    print("-" * len(header))
    failures = 0
    for op in args.ops:
        for n in args.dims:
            described, rows = _check(op, n)
            for i, (_, _, name, err, ms, ok) in enumerate(rows):
                failures += not ok
                case_text = described if i == 0 else ""
                print(f"{op:<22}{n:>2}  {name:<9}{err:>11.2e}{ms:>10.3f}  "
                      f"{'ok' if ok else 'NO':<3} {case_text}")
    print(f"\n{'all checks passed' if not failures else f'{failures} check(s) FAILED'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
