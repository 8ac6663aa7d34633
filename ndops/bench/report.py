"""The report directory: ``report.md`` (tables + machine/version metadata), ``results.json``
(every raw number) and the plots (``ndops.bench.plots``); and the summary printed at the end.

Files are written atomically (temp file + rename); other files in the directory are left alone.
"""
import datetime
import json
import os
import platform
import shlex
import tempfile

import torch

import ndops

from .runner import METHODS, MISMATCH_TOLERANCE, reference_row


def _version(module):
    try:
        return __import__(module).__version__
    except Exception:  # absent, or broken: the report says so
        return None


def _read(path, default=""):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def _cpu_model():
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_metadata(argv, device):
    """Machine, versions and settings that a reader needs to interpret the numbers."""
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join(argv),
        "cpu": _cpu_model(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "numpy": _version("numpy"), "ndops": ndops.__version__,
        "extension_built": ndops.has_extension(),
        "extension_error": None if ndops.has_extension() else str(ndops.load_error()),
        "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE"),
        # allocator settings that decide whether fresh outputs reuse memory (README, Benchmarks)
        "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES"),
        "LD_PRELOAD": os.environ.get("LD_PRELOAD"),
        "transparent_hugepage": _read("/sys/kernel/mm/transparent_hugepage/enabled").strip()
        or None,
        "loadavg": _read("/proc/loadavg").split()[:3],
        "jax": _version("jax"), "matplotlib": _version("matplotlib"), "device": device,
    }
    if torch.device(device).type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name()
        meta["cuda"] = torch.version.cuda
    return meta


def write_atomic(path, text):
    """Write ``text`` to ``path`` through a temporary file in the same directory."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give it a normal file's mode
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path, data):
    write_atomic(path, json.dumps(data, indent=1, default=str) + "\n")


def _fmt(value, spec=".3g", empty="-"):
    if value is None:
        return empty
    text = format(value, spec)
    return text if "e" not in text else format(value, ".2e")


def _ms(row):
    return _fmt(row["median_ms"]) + (" ~" if row["noisy"] else "")


def _ratio(row):
    if row["reference"] is None:
        return "-"
    return "ref" if row["method"] == row["reference"] else f"{row['ndops_speedup']:.2f}x"


def _err(row):
    if row["max_rel_err"] is None:
        return "-"
    return f"{row['max_rel_err']:.1e}" + (" !" if row["mismatch"] else "")


def _cases_in_order(rows):
    return list(dict.fromkeys(r["case"] for r in rows))


def family_table(rows):
    """Markdown table of one family's rows (case name on the first row of each case)."""
    unit = next((r["unit"] for r in rows if r["unit"]), None)
    limit_name = {"GFLOP/s": "% of peak", "GB/s": "% of BW"}.get(unit, "% of limit")
    unit = unit or "rate"
    lines = [f"| case | method | ms (median) | spread % | {unit} | {limit_name} | ndops x | "
             "extra MiB | max rel err |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in _cases_in_order(rows):
        for i, r in enumerate(r for r in rows if r["case"] == name):
            title = name + (f" ({r['note']})" if r["note"] else "")
            lines.append(
                f"| {title if i == 0 else ''} | {r['label']} | {_ms(r)} | "
                f"{r['spread_pct']:.0f} | {_fmt(r['rate'], '.1f')} | "
                f"{_fmt(r['pct_of_limit'], '.0f')} | {_ratio(r)} | "
                f"{_fmt(r['extra_memory_mib'], '.1f')} | {_err(r)} |")
    return "\n".join(lines)


def targets_table(targets):
    lines = ["| case | target | measured | met |", "|---|---|---|:-:|"]
    for t in targets:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['case']} | {t['target']} | {t['note']} | {met} |")
    return "\n".join(lines)


def _methods_text(settings):
    return "\n".join([
        f"- **Timing**: {settings['warmup']} warm-up call(s), then up to {settings['repeats']} "
        f"timed calls (at least {settings['min_repeats']}, stopping after "
        f"{settings['budget_s']:g} s of them), the methods of a case in interleaved rounds of "
        f"one call each; **ms** is the median, **spread** the interquartile range as % of the "
        f"median. `~` marks a noisy row: spread or other processes' CPU use during the rounds "
        f"above {settings['noise_pct']:g} %.",
        "- **fwd+bwd**: forward, then `torch.autograd.grad` of the input (and weight, bias) "
        "for a fixed random grad_output. **train**: MSE loss, backward, SGD update.",
        "- **GFLOP/s** (convolutions): 2 x B x C_out x C_in x prod(kernel) x output positions "
        "per forward, 3x for fwd+bwd; **% of peak** against the GEMM peak measured above. "
        "**GB/s** (memory-bound ops): bytes the op must read and write (input + output; the "
        "backward adds grad_output + grad_input; max pools 8-byte indices; batch norm 2 / 5 "
        "passes over x); **% of BW** against the copy bandwidth above.",
        "- **ndops x**: this row's time / the reference row's time (ndops ext, else ndops "
        "default, else ndops fallback): above 1 means ndops' reference is that many times "
        "faster.",
        "- **extra MiB**: peak resident memory of one call above what was resident before it "
        "(outputs, saved tensors, workspaces such as im2col), from the kernel's RSS "
        "high-water mark reset before the call (`/proc/self/clear_refs`); on CUDA, "
        "`torch.cuda.max_memory_allocated`.",
        f"- **max rel err**: max|out - ref| / max|ref| against the fallback's result (output "
        f"and gradients); `!` above {MISMATCH_TOLERANCE:g}.",
    ])


def _machine_table(meta):
    extension = "built" if meta["extension_built"] else f"not loaded ({meta['extension_error']})"
    items = [("date", meta["date"]), ("command", f"`{meta['command']}`"),
             ("CPU", f"{meta['cpu']} ({meta['cpu_capability']})"), ("cores", meta["cores"]),
             ("torch threads", meta["threads"]), ("device", meta["device"])]
    if "gpu" in meta:
        items.append(("GPU", f"{meta['gpu']} (CUDA {meta['cuda']})"))
    items += [("torch", meta["torch"]), ("ndops", f"{meta['ndops']}, extension {extension}"),
              ("python", meta["python"]), ("JAX", meta["jax"] or "not installed"),
              ("THP_MEM_ALLOC_ENABLE", meta["THP_MEM_ALLOC_ENABLE"] or "unset"),
              ("GLIBC_TUNABLES", meta.get("GLIBC_TUNABLES") or "unset"),
              ("LD_PRELOAD", meta.get("LD_PRELOAD") or "unset"),
              ("transparent_hugepage", meta["transparent_hugepage"]),
              ("load average at start", " ".join(meta["loadavg"]))]
    return "\n".join(["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in items])


def _limits_text(limits):
    gemm, copy = limits["gemm"], limits["copy"]
    return (f"- GEMM peak: **{gemm['gflops']:.1f} GFLOP/s** ({gemm['detail']}).\n"
            f"- Copy bandwidth: **{copy['gbps']:.1f} GB/s** ({copy['detail']}).\n"
            f"- Writing a freshly allocated {copy['mib']} MiB buffer: "
            f"{copy['fresh_write_gbps']:.1f} GB/s (first-touch page faults, paid by every op "
            f"that returns a new large tensor; `THP_MEM_ALLOC_ENABLE=1` reduces them).\n"
            f"- Each limit is the fastest of several calls, measured before and after the cases; "
            f"the higher of the two is kept.")


def _skipped_text(skipped):
    reasons = {}
    for s in skipped:
        reasons.setdefault((s["method"], s["reason"]), []).append(s["case"])
    lines = []
    for (method, reason), cases in reasons.items():
        shown = ", ".join(cases[:4]) + (f", ... ({len(cases)} cases)" if len(cases) > 4 else "")
        lines.append(f"- {METHODS[method]}: {reason} — {shown}")
    return "\n".join(lines)


def report_markdown(data, plot_files, plot_note):
    """The text of report.md for ``data`` (the content of results.json)."""
    meta, rows = data["meta"], data["results"]
    parts = ["# ndops benchmark report", "", _machine_table(meta), ""]
    if not meta["THP_MEM_ALLOC_ENABLE"]:
        parts += ["Bandwidth rows were measured without `THP_MEM_ALLOC_ENABLE=1`: fresh outputs "
                  "pay first-touch page faults (issue 3 measures bandwidth targets with it).", ""]
    parts += ["## Machine limits (same run)", "", _limits_text(data["limits"]), "",
              "## How to read the tables", "", _methods_text(data["settings"]), ""]
    for note in data["notes"]:
        parts += [f"> {note}", ""]
    if data["targets"]:
        parts += ["## Targets (issue 3)", "", targets_table(data["targets"]), ""]
    parts += ["## Results by op", ""]
    for family in dict.fromkeys(r["family"] for r in rows):
        parts += [f"### {family}", "", family_table([r for r in rows if r["family"] == family]),
                  ""]
    parts += ["## Plots", ""]
    parts += [f"![{title}]({name})" for name, title in plot_files] if plot_files else []
    parts += ["", plot_note, ""] if plot_note else [""]
    if data["skipped"]:
        parts += ["## Methods that did not run", "", _skipped_text(data["skipped"]), ""]
    parts += [f"Total time: {data['elapsed_s']:.0f} s. Raw numbers: `results.json`.", ""]
    return "\n".join(parts)


def summary_table(rows, targets):
    """Plain-text table: one line per case, each method's median ms, the reference's % of
    limit, its speedup over the fastest other method, and flags."""
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    width = max([len(c) for c in _cases_in_order(rows)] + [4])
    columns = {m: len(METHODS[m]) + 5 for m in methods}
    head = (f"{'case':<{width}}" + "".join(f"{METHODS[m] + ' ms':>{columns[m]}}" for m in methods)
            + f"{'% limit':>9}{'vs best alt':>13}  flags")
    lines = [head, "-" * len(head)]
    missed = {t["case"] for t in targets if t["met"] is False}
    for name in _cases_in_order(rows):
        case_rows = {r["method"]: r for r in rows if r["case"] == name}
        ref = reference_row(list(case_rows.values()))
        alternatives = [r["median_ms"] for r in case_rows.values() if r is not ref]
        speedup = (f"{min(alternatives) / ref['median_ms']:.2f}x"
                   if ref is not None and alternatives else "-")
        pct = _fmt(ref["pct_of_limit"], ".0f") if ref is not None else "-"
        flags = "".join(flag for flag, on in (
            ("~", any(r["noisy"] for r in case_rows.values())),
            ("!", any(r["mismatch"] for r in case_rows.values())),
            ("T", name in missed)) if on)
        times = "".join(f"{_fmt(case_rows[m]['median_ms']) if m in case_rows else '':>{columns[m]}}"
                        for m in methods)
        lines.append(f"{name:<{width}}{times}{pct:>9}{speedup:>13}  {flags}")
    lines.append("flags: ~ noisy timing, ! results disagree, T a target missed. 'vs best "
                 "alt': the fastest other method's time / the reference's (ndops ext, else "
                 "ndops default, else ndops fallback); '% limit' is the reference's.")
    return "\n".join(lines)
