"""Run cases x methods: time each method, measure its extra memory, check it agrees with the
others, and evaluate the targets. Produces plain dicts (the rows of results.json)."""
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

import ndops

from . import jax_ops
from .cases import Speedup
from .families import FAMILIES
from .plan import NotApplicable, Unavailable
from .timing import measure_interleaved, peak_extra_memory, synchronizer

# Every method, in report order, with its label.
METHODS = {
    "ext": "ndops ext",
    "auto": "ndops default",
    "fallback": "ndops fallback",
    "torch": "torch",
    "loop-conv3d": "loop of conv3d",
    "jax": "JAX",
}
# The row every other row of a case is compared with: the first of these that ran.
REFERENCE_ORDER = ("ext", "auto", "fallback")
# A method's result differing from the fallback's (the exact pure-PyTorch path) by more than
# this (max |a - b| / max |b| over the output and the gradients, fp32) is flagged a mismatch.
MISMATCH_TOLERANCE = 1e-3
# N <= 3: ndops' default choice must run at >= this fraction of torch's speed (issue 3).
NATIVE_TARGET = 0.95


@dataclass(frozen=True)
class Settings:
    """How each row is timed (``ndops.bench.timing.measure``) and where it runs."""
    warmup: int
    repeats: int
    min_repeats: int
    budget_s: float
    noise_pct: float = 10.0
    device: str = "cpu"
    scale: str = "normal"


QUICK = Settings(warmup=1, repeats=7, min_repeats=3, budget_s=0.5)
FULL = Settings(warmup=2, repeats=20, min_repeats=5, budget_s=4.0)
TINY = Settings(warmup=1, repeats=3, min_repeats=2, budget_s=0.05, scale="tiny")


def methods_for(case, device="cpu"):
    """The methods that exist for ``case`` (some may still be Unavailable when run), without
    building its inputs."""
    family = FAMILIES[case.family]
    methods = []
    for method in METHODS:
        if method == "jax":
            if case.family in jax_ops.BUILDERS:
                methods.append(method)
            continue
        if family.op is None:  # models
            if method in family.methods:
                methods.append(method)
            continue
        try:
            family.method_call(method, case, device)
        except NotApplicable:
            continue
        except Unavailable:
            pass
        methods.append(method)
    return methods


def case_methods(cases, device="cpu"):
    """[(case, method)] for every method that exists for each case (pytest parameters)."""
    return [(case, method) for case in cases for method in methods_for(case, device)]


def _json_value(value):
    if isinstance(value, (tuple, list)):
        return [_json_value(v) for v in value]
    return value


def _as_tensor(value):
    return value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))


def relative_error(result, reference):
    """max |a - b| / max |b| (float64) over the paired tensors of two results."""
    worst = 0.0
    for a, b in zip(result, reference):
        a, b = _as_tensor(a).double().cpu(), _as_tensor(b).double().cpu()
        if a.shape != b.shape:
            return math.inf
        if b.numel():
            scale = b.abs().max().item() or 1.0
            worst = max(worst, (a - b).abs().max().item() / scale)
    return worst


def apply_limits(rows, limits):
    """Set each row's limit (GEMM peak for GFLOP/s rows, copy bandwidth for GB/s rows) and its
    % of it from ``limits``: at timing, then again with the final limits measured after the
    rows."""
    for row in rows:
        row["limit"] = {"GFLOP/s": limits["gemm"]["gflops"],
                        "GB/s": limits["copy"]["gbps"]}.get(row["unit"])
        row["pct_of_limit"] = (100.0 * row["rate"] / row["limit"]
                               if row["rate"] and row["limit"] else None)


def _row(case, method, timing, plan, limits, settings, extra_bytes):
    median = timing.median
    q1, q3 = timing.quartiles
    rate = plan.work / median / 1e9 if plan.work else None
    row = {
        "case": case.name, "id": case.id, "family": case.family,
        "op": getattr(FAMILIES[case.family], "op", None), "n": case.n, "pass": case.passes,
        "shape": list(case.shape), "params": {k: _json_value(v) for k, v in case.params.items()},
        "note": case.note, "method": method, "label": METHODS[method],
        "median_ms": 1e3 * median, "q1_ms": 1e3 * q1, "q3_ms": 1e3 * q3,
        "spread_pct": timing.spread_pct, "samples_ms": [1e3 * t for t in timing.samples],
        "warmup": timing.warmup, "other_load_pct": timing.other_load_pct,
        "noisy": timing.noisy(settings.noise_pct),
        "work": plan.work, "unit": plan.unit, "rate": rate, "limit": None, "pct_of_limit": None,
        "input_mib": plan.input_bytes / 2 ** 20,
        "extra_memory_mib": None if extra_bytes is None else extra_bytes / 2 ** 20,
        "max_rel_err": None, "mismatch": False, "speedup_vs": {}, "ndops_speedup": None,
        "reference": None,
    }
    apply_limits([row], limits)
    return row


def run_case(case, methods, settings, limits, on_method=lambda method: None):
    """(rows, skipped) for one case: a row per method that ran, and a {"case", "method",
    "reason"} entry per method that could not. ``on_method(method)`` before each method's
    warm-up, ``on_method(None)`` when the timed rounds begin."""
    rows, skipped, results = [], [], {}
    try:
        plan = FAMILIES[case.family].plan(case, settings.device, methods)
    except Exception as exc:  # a broken op must not end the whole report
        return [], [{"case": case.name, "method": m, "reason": f"case failed: {_error(exc)}"}
                    for m in methods]
    sync = synchronizer(settings.device)
    runs = {}
    for method in [m for m in METHODS if m in plan.runs]:
        if isinstance(plan.runs[method], Unavailable):
            skipped.append({"case": case.name, "method": method, "reason": str(plan.runs[method])})
        else:
            runs[method] = plan.runs[method]
    timings, errors = measure_interleaved(runs, warmup=settings.warmup, repeats=settings.repeats,
                                          min_repeats=settings.min_repeats,
                                          budget_s=settings.budget_s, sync=sync,
                                          on_warmup=on_method)
    for method, run in runs.items():
        if method in timings:
            try:
                results[method], extra = peak_extra_memory(run, settings.device)
            except Exception as exc:
                errors[method] = exc
            else:
                rows.append(_row(case, method, timings[method], plan, limits, settings, extra))
        if method in errors:
            skipped.append({"case": case.name, "method": method, "reason": _error(errors[method])})
    _compare(rows, results, plan.comparable)
    return rows, skipped


def _error(exc):
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def reference_row(rows):
    by_method = {r["method"]: r for r in rows}
    return next((by_method[m] for m in REFERENCE_ORDER if m in by_method), None)


def _compare(rows, results, comparable):
    """Fill ``speedup_vs`` ({other method: its time / this row's time}, > 1 where this row is
    faster), ``ndops_speedup`` (this row's time / the reference row's) and the errors against
    the fallback's result (else the reference's)."""
    ref = reference_row(rows)
    for row in rows:
        row["speedup_vs"] = {other["method"]: other["median_ms"] / row["median_ms"]
                             for other in rows if other is not row}
        if ref is not None:
            row["reference"] = ref["method"]
            row["ndops_speedup"] = row["median_ms"] / ref["median_ms"]
    if not comparable or not rows:
        return
    truth = "fallback" if "fallback" in results else (ref or rows[0])["method"]
    for row in rows:
        row["max_rel_err"] = relative_error(results[row["method"]], results[truth])
        row["mismatch"] = row["max_rel_err"] > MISMATCH_TOLERANCE


def evaluate_targets(case, rows, device="cpu"):
    """One {"case", "pass", "target", "value", "met", "note"} per target of the case, plus
    the N <= 3 rule (ndops' default choice >= 0.95x torch) where a torch row exists."""
    by_method = {r["method"]: r for r in rows}
    ext = by_method.get("ext")
    labels = dict(METHODS)
    checks = []
    for target in case.targets:
        text = target.describe(labels)
        if ext is None:
            checks.append((text, None, None, "ndops ext did not run"))
        elif isinstance(target, Speedup):
            other = by_method.get(target.method)
            value = None if other is None else other["median_ms"] / ext["median_ms"]
            checks.append((text, value, None if value is None else value >= target.factor,
                           f"{value:.2f}x" if value else f"{labels[target.method]} did not run"))
        else:
            pct = ext["pct_of_limit"]
            checks.append((text, pct, None if pct is None else pct >= 100 * target.fraction,
                           f"{pct:.0f} % of {ext['limit']:.0f} {ext['unit']}" if pct else ""))
    family = FAMILIES[case.family]
    if case.n <= 3 and getattr(family, "op", None) and "torch" in by_method:
        text = f">= {NATIVE_TARGET:g}x torch (ndops' default choice)"
        default = family.default_backend(case, device)
        if default == "native":
            checks.append((text, 1.0, True, "dispatches to torch"))
        elif default in by_method:
            value = by_method["torch"]["median_ms"] / by_method[default]["median_ms"]
            checks.append((text, value, value >= NATIVE_TARGET,
                           f"{METHODS[default]}: {value:.2f}x"))
    return [{"case": case.name, "pass": case.passes, "target": text, "value": value,
             "met": met, "note": note} for text, value, met, note in checks]


def settings_dict(settings):
    return asdict(settings)
