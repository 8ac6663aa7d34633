"""The report's PNG plots (matplotlib, Agg backend): speedup by op and N, % of the machine's
limit, and throughput against problem size. Without matplotlib, ``draw`` draws nothing and
says why."""
import os

from .runner import METHODS

_COLORS = {"ext": "tab:blue", "auto": "tab:cyan", "fallback": "tab:orange", "torch": "tab:green",
           "loop-conv3d": "tab:red", "jax": "tab:purple"}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    return plt


def _grouped_barh(plt, path, cases, series, xlabel, title, log=False, line=None):
    """Horizontal bars: one group per case (y), one bar per method in ``series``
    ({method: [value or None per case]})."""
    height = 0.8 / max(len(series), 1)
    inches = 1.2 + 0.32 * len(cases) * max(1, len(series) / 2)
    fig, ax = plt.subplots(figsize=(11, inches))
    for i, (method, values) in enumerate(series.items()):
        ys = [j + i * height for j, v in enumerate(values) if v is not None]
        xs = [v for v in values if v is not None]
        ax.barh(ys, xs, height=height, color=_COLORS[method], label=METHODS[method])
    ax.set_yticks([j + (len(series) - 1) * height / 2 for j in range(len(cases))])
    ax.set_yticklabels(cases, fontsize=7)
    ax.invert_yaxis()
    if log:
        ax.set_xscale("log")
    if line is not None:
        ax.axvline(line, color="black", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    # fixed margins (tight_layout re-measures every label: seconds on a loaded machine)
    fig.subplots_adjust(left=0.42, right=0.98, top=1 - 0.5 / inches, bottom=0.6 / inches)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _by_case(rows):
    cases = list(dict.fromkeys(r["case"] for r in rows))
    table = {c: {r["method"]: r for r in rows if r["case"] == c} for c in cases}
    return cases, table


def _speedup(plt, rows, path):
    cases, table = _by_case(rows)
    cases = [c for c in cases if len(table[c]) > 1]
    others = [m for m in METHODS if any(m in table[c] and table[c][m]["reference"] != m
                                        for c in cases)]
    series = {m: [table[c][m]["ndops_speedup"] if m in table[c] and
                  table[c][m]["reference"] != m else None for c in cases] for m in others}
    _grouped_barh(plt, path, cases, series, "ndops reference is this many times faster (log)",
                  "Speedup of ndops (ext, else default/fallback) over each alternative, by op "
                  "and N", log=True, line=1.0)


def _roofline(plt, rows, path):
    rows = [r for r in rows if r["pct_of_limit"] is not None]
    cases, table = _by_case(rows)
    methods = [m for m in METHODS if any(m in table[c] for c in cases)]
    series = {m: [table[c][m]["pct_of_limit"] if m in table[c] else None for c in cases]
              for m in methods}
    _grouped_barh(plt, path, cases, series, "% of limit (GEMM peak or copy bandwidth)",
                  "% of the machine's measured limit", line=100.0)


_MARKERS = {1: "v", 2: "s", 3: "^", 4: "o", 5: "D"}


def _scaling(plt, rows, path):
    """Per family with several input sizes: achieved GFLOP/s or GB/s against input size;
    colour = method, marker = N, lines join the sizes of one (method, N, pass)."""
    rows = [r for r in rows if r["rate"] is not None]
    families = [f for f in dict.fromkeys(r["family"] for r in rows)
                if len({r["input_mib"] for r in rows if r["family"] == f}) > 1]
    columns = min(3, len(families)) or 1
    grid = (len(families) + columns - 1) // columns or 1
    fig, axes = plt.subplots(grid, columns, figsize=(4.2 * columns, 3.2 * grid), squeeze=False)
    for ax in axes.flat[len(families):]:
        ax.set_visible(False)
    for ax, family in zip(axes.flat, families):
        mine = [r for r in rows if r["family"] == family]
        for key in dict.fromkeys((r["method"], r["n"], r["pass"]) for r in mine):
            method, n, _ = key
            points = sorted((r["input_mib"], r["rate"]) for r in mine
                            if (r["method"], r["n"], r["pass"]) == key)
            ax.plot(*zip(*points), "-", marker=_MARKERS.get(n, "o"), color=_COLORS[method],
                    markersize=4, linewidth=1)
        for method in dict.fromkeys(r["method"] for r in mine):
            ax.plot([], [], "-", color=_COLORS[method], label=METHODS[method])
        for n in sorted({r["n"] for r in mine}):
            ax.plot([], [], _MARKERS.get(n, "o"), color="gray", label=f"{n}-D")
        ax.set_xscale("log")
        ax.set_title(family, fontsize=9)
        ax.set_xlabel("input MiB (log)", fontsize=8)
        ax.set_ylabel(mine[0]["unit"], fontsize=8)
        ax.legend(fontsize=6)
    if not families:
        axes.flat[0].set_visible(True)
        axes.flat[0].text(0.5, 0.5, "no family was run at more than one size",
                          ha="center", va="center")
    fig.suptitle("Throughput against problem size (lines join sizes of one method, N, pass)",
                 fontsize=10)
    inches = 3.2 * grid
    fig.subplots_adjust(left=0.08, right=0.98, top=1 - 0.6 / inches, bottom=0.55 / inches,
                        hspace=0.6, wspace=0.3)
    fig.savefig(path, dpi=100)
    plt.close(fig)


PLOTS = (("speedup.png", "speedup by op and N", _speedup),
         ("roofline.png", "% of roofline", _roofline),
         ("scaling.png", "scaling with size", _scaling))


def draw(rows, directory):
    """([(file name, title)] written, note for the report: empty, or why plots are missing)."""
    try:
        plt = _pyplot()
    except ImportError as exc:
        return [], (f"matplotlib is not installed ({exc}): no plots. "
                    "Install it with `pip install ndops[bench]`.")
    written = []
    for name, title, fn in PLOTS:
        path = os.path.join(directory, name)
        tmp = os.path.join(directory, f".tmp-{name}")
        if rows:
            fn(plt, rows, tmp)
            os.replace(tmp, path)
            written.append((name, title))
    return written, "" if rows else "No rows: no plots."
