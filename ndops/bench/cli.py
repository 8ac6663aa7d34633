"""``ndops-bench`` / ``python -m ndops.bench``: time ndops' ops and models against the
alternatives (ndops fallback, loop of conv3d, torch for N <= 3, JAX if installed) and write a
report directory: report.md, results.json and PNG plots.

    ndops-bench --quick                       # < 2 min on a 2-core CPU
    THP_MEM_ALLOC_ENABLE=1 ndops-bench --full --out report-full
    ndops-bench --ops conv max_pool --dims 4 5 --methods ext fallback --repeats 30
"""
import argparse
import dataclasses
import os
import sys
import time

import torch

from . import cases as cases_module
from .families import FAMILIES
from .limits import best_limits, measure_limits
from .plots import draw
from .report import machine_metadata, report_markdown, summary_table, write_atomic, write_json
from .runner import (FULL, METHODS, QUICK, TINY, apply_limits, evaluate_targets, run_case,
                     settings_dict)

DEFAULT_OUT = "ndops-bench-report"


def _op_names():
    """Accepted --ops names: family names, and the ndops op names they time."""
    names = {family: family for family in cases_module.families()}
    for family in cases_module.families():
        op = getattr(FAMILIES[family], "op", None)
        if op:
            names.setdefault(op, family)
    return names


def _list_type(kind, choices):
    """argparse type for one or more comma-separated names out of ``choices``."""
    def parse(text):
        picked = []
        for name in filter(None, (part.strip() for part in text.split(","))):
            if name not in choices:
                raise argparse.ArgumentTypeError(
                    f"unknown {kind} {name!r}; choose from {', '.join(choices)}")
            picked.append(choices[name] if isinstance(choices, dict) else name)
        return picked
    return parse


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _dims(text):
    """One or more comma-separated positive integers."""
    return [_positive_int(part) for part in text.split(",") if part.strip()]


def _percent(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a percentage, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a percentage > 0, got {value:g}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ndops-bench",
        description="Time ndops' ops and models against the alternatives (ndops fallback, loop "
                    "of conv3d, torch for N <= 3, JAX if installed) and write a report "
                    "directory: report.md, results.json and PNG plots.",
        epilog="Bandwidth-bound rows: run with THP_MEM_ALLOC_ENABLE=1 (torch's huge-page "
               "allocator) to keep first-touch page faults of fresh outputs out of the numbers.")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="the quick subset of cases, few repeats (default; < 2 min on 2 cores)")
    size.add_argument("--full", action="store_true",
                      help="every case (issue 3's targets, N = 1..5, models), more repeats")
    parser.add_argument("--out", metavar="DIR", default=DEFAULT_OUT,
                        help=f"report directory (default ./{DEFAULT_OUT}; other files in it "
                             "are kept)")
    families = _op_names()
    parser.add_argument("--ops", nargs="+", metavar="OP", type=_list_type("op", families),
                        help="op families to run (names or ndops op names, space or comma "
                             f"separated): {', '.join(cases_module.families())}")
    parser.add_argument("--dims", nargs="+", metavar="N", type=_dims,
                        help="spatial dims to run (e.g. 3 4 5, or 3,4,5)")
    parser.add_argument("--methods", nargs="+", metavar="METHOD",
                        type=_list_type("method", list(METHODS)),
                        help=f"methods to time: {', '.join(METHODS)} (default: all available)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="where to run (default cpu)")
    parser.add_argument("--repeats", type=_positive_int, metavar="N",
                        help="most timed calls per row (default 7 quick, 20 full)")
    parser.add_argument("--threads", type=_positive_int, default=2, metavar="N",
                        help="torch.set_num_threads (default 2)")
    parser.add_argument("--noise", type=_percent, default=10.0, metavar="PCT",
                        help="flag rows whose spread or foreign CPU load exceeds PCT %% "
                             "(default 10)")
    parser.add_argument("--list", action="store_true", help="print the selected cases and exit")
    parser.add_argument("--scale", choices=("normal", "tiny"), default="normal",
                        help=argparse.SUPPRESS)  # tiny: the test suite's sizes
    return parser


def _flatten(groups):
    return None if groups is None else [item for group in groups for item in group]


def _settings(args):
    base = TINY if args.scale == "tiny" else FULL if args.full else QUICK
    changes = dict(noise_pct=args.noise, device=args.device)
    if args.repeats:
        changes.update(repeats=args.repeats, min_repeats=min(base.min_repeats, args.repeats))
    return dataclasses.replace(base, **changes)


def _jax_installed():
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


class _Progress:
    """tqdm's bar when tqdm is installed, else one line per case."""

    def __init__(self, total):
        self.total, self.done = total, 0
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar = None
        else:
            self.bar = tqdm(total=total, unit="case", file=sys.stderr, dynamic_ncols=True)

    def method(self, case, method):
        """Show what runs: a method's warm-up, or (method None) the timed rounds of them all."""
        if self.bar is not None:
            doing = "timing" if method is None else METHODS[method]
            self.bar.set_description_str(f"{case.name[:60]} | {doing}")

    def case_done(self, case, rows):
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            return
        timings = ", ".join(f"{r['label']} {r['median_ms']:.3g} ms" for r in rows) or "no rows"
        print(f"[{self.done}/{self.total}] {case.name}: {timings}", flush=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _run_cases(selected, methods, settings, limits, scale):
    """(rows, skipped, [(case, its rows)]) of every selected case, with a progress display."""
    rows, skipped, by_case = [], [], []
    progress = _Progress(len(selected))
    for case in selected:
        case = case.at_scale(scale)
        case_rows, case_skipped = run_case(case, methods, settings, limits,
                                           lambda m, c=case: progress.method(c, m))
        rows += case_rows
        skipped += case_skipped
        by_case.append((case, case_rows))
        progress.case_done(case, case_rows)
    progress.close()
    return rows, skipped, by_case


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available (torch.cuda.is_available() "
                     f"is False; torch {torch.__version__})")
    dims = _flatten(args.dims)
    selected = cases_module.select(quick=not args.full, families=_flatten(args.ops), dims=dims)
    if not selected:
        parser.error(f"no benchmark case matches --ops {' '.join(_flatten(args.ops) or ['(all)'])}"
                     f" --dims {' '.join(map(str, dims or ['(all)']))} in the "
                     f"{'full' if args.full else 'quick'} set")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        parser.error(f"--out {args.out}: exists and is not a directory")
    if args.list:
        for case in selected:
            print(case.at_scale(args.scale).name)
        return 0

    torch.set_num_threads(args.threads)
    settings = _settings(args)
    methods = list(dict.fromkeys(_flatten(args.methods) or METHODS))
    notes = []
    if "jax" in methods and not _jax_installed():
        methods.remove("jax")
        notes.append("JAX is not installed: no JAX rows (`pip install jax` adds them).")
    if args.scale == "tiny":
        notes.append("Tiny sizes (test run): the numbers say nothing about performance.")
    os.makedirs(args.out, exist_ok=True)
    start = time.perf_counter()
    argv_shown = ["ndops-bench", *(sys.argv[1:] if argv is None else argv)]
    meta = machine_metadata(argv_shown, args.device)
    print(f"ndops-bench: {len(selected)} cases, methods {', '.join(methods)}, "
          f"{torch.get_num_threads()} threads, device {args.device}, THP_MEM_ALLOC_ENABLE="
          f"{meta['THP_MEM_ALLOC_ENABLE'] or 'unset'}", flush=True)
    limits = measure_limits(args.device, args.scale)
    print(f"limits: GEMM peak {limits['gemm']['gflops']:.1f} GFLOP/s, copy bandwidth "
          f"{limits['copy']['gbps']:.1f} GB/s", flush=True)

    rows, skipped, by_case = _run_cases(selected, methods, settings, limits, args.scale)
    limits = best_limits(limits, measure_limits(args.device, args.scale))
    apply_limits(rows, limits)
    print(f"limits after the cases (the higher of both kept): GEMM peak "
          f"{limits['gemm']['gflops']:.1f} GFLOP/s, copy bandwidth {limits['copy']['gbps']:.1f} GB/s",
          flush=True)
    targets = [t for case, case_rows in by_case
               for t in evaluate_targets(case, case_rows, settings.device)]
    data = {"meta": meta, "settings": settings_dict(settings), "limits": limits,
            "methods": {m: METHODS[m] for m in methods}, "notes": notes,
            "cases": [c.at_scale(args.scale).name for c in selected], "results": rows,
            "skipped": skipped, "targets": targets}
    plot_files, plot_note = draw(rows, args.out)
    data["elapsed_s"] = time.perf_counter() - start
    write_json(os.path.join(args.out, "results.json"), data)
    report = os.path.join(args.out, "report.md")
    write_atomic(report, report_markdown(data, plot_files, plot_note))
    print()
    print(summary_table(rows, targets))
    for note in notes + ([plot_note] if plot_note else []):
        print(f"note: {note}")
    print(f"\nreport: {os.path.abspath(report)} ({data['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
