"""ndops.bench: the ndops-bench report (tiny sizes), its options, the shared case list, the
loop-of-conv3d baselines and the measuring helpers."""
import importlib.util
import json
import os
import pathlib
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from ndops.bench import cases, cli, plots, report, runner
from ndops.bench.baselines import conv_loop_of_conv3d, conv_transpose_loop_of_conv3d
from ndops.bench.timing import (Timing, measure, measure_interleaved, peak_extra_memory,
                                rss_probe_available)

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"
PLOTS = ("speedup.png", "roofline.png", "scaling.png")


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    """One tiny --quick run (1 thread) into a directory that already holds a user's file."""
    threads = torch.get_num_threads()
    out = tmp_path_factory.mktemp("bench") / "report"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    try:
        code = cli.main(["--quick", "--scale", "tiny", "--threads", "1", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    return code, out


def test_quick_writes_every_artefact(quick_report):
    code, out = quick_report
    assert code == 0
    for name in ("report.md", "results.json", *PLOTS):
        assert (out / name).stat().st_size > 0, name
    assert (out / "notes.txt").read_text() == "mine"  # other files are kept
    assert not [p for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_results_json_fields(quick_report):
    data = json.loads((quick_report[1] / "results.json").read_text())
    meta = data["meta"]
    for key in ("date", "command", "cpu", "cores", "threads", "torch", "ndops",
                "extension_built", "THP_MEM_ALLOC_ENABLE", "GLIBC_TUNABLES", "LD_PRELOAD",
                "transparent_hugepage"):
        assert key in meta, key
    assert meta["threads"] == 1 and "--quick" in meta["command"]
    assert data["limits"]["gemm"]["gflops"] > 0 and data["limits"]["copy"]["gbps"] > 0
    expected = [c.at_scale("tiny").name for c in cases.select(quick=True)]
    assert data["cases"] == expected
    ran = {r["case"] for r in data["results"]}
    assert set(expected) - ran <= {s["case"] for s in data["skipped"]}
    for row in data["results"]:
        assert row["median_ms"] > 0 and len(row["samples_ms"]) >= 1
        assert row["q1_ms"] <= row["median_ms"] <= row["q3_ms"]
        assert row["spread_pct"] >= 0 and isinstance(row["noisy"], bool)
        assert row["method"] in runner.METHODS and row["reference"] in runner.REFERENCE_ORDER
        assert not row["mismatch"], (row["case"], row["method"], row["max_rel_err"])
        if row["unit"] is not None:
            assert row["rate"] > 0 and row["pct_of_limit"] > 0
        if rss_probe_available():
            assert row["extra_memory_mib"] is not None
        assert set(row["speedup_vs"]) == {r["method"] for r in data["results"]
                                          if r["case"] == row["case"]} - {row["method"]}
    conv4 = {r["method"] for r in data["results"] if r["family"] == "conv" and r["n"] == 4}
    assert {"fallback", "loop-conv3d"} <= conv4
    assert all(t["met"] in (True, False, None) for t in data["targets"])


def test_report_md_contents(quick_report):
    text = (quick_report[1] / "report.md").read_text()
    for part in ("# ndops benchmark report", "THP_MEM_ALLOC_ENABLE", "## Machine limits",
                 "GEMM peak", "Copy bandwidth", "## Results by op", "### conv",
                 "| case | method | ms (median) | spread % | GFLOP/s | % of peak | ndops x |",
                 "GB/s | % of BW", "extra MiB", *PLOTS):
        assert part in text, part


def test_summary_and_progress_lines_without_tqdm(tmp_path, capsys, monkeypatch,
                                                 restore_threads):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # `import tqdm` fails: one line per case
    out = tmp_path / "r"
    assert cli.main(["--scale", "tiny", "--ops", "max_pool,pad", "--dims", "4",
                     "--methods", "ext", "fallback", "--threads", "1", "--repeats", "2",
                     "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "[1/3] max_pool 4-D B2 C3 4^4 k2 [fwd+bwd]: ndops ext" in printed
    assert "ndops fallback ms" in printed and "[3/3] pad 4-D" in printed
    assert f"report: {out.resolve() / 'report.md'}" in printed
    rows = json.loads((out / "results.json").read_text())["results"]
    assert {r["family"] for r in rows} == {"max_pool", "pad"} and {r["n"] for r in rows} == {4}
    assert {r["method"] for r in rows} <= {"ext", "fallback"}
    assert max(len(r["samples_ms"]) for r in rows) <= 2


def test_without_matplotlib_the_report_says_so(tmp_path, monkeypatch):
    def missing():
        raise ImportError("No module named 'matplotlib'")
    monkeypatch.setattr(plots, "_pyplot", missing)
    written, note = plots.draw([{"case": "x"}], str(tmp_path))
    assert written == [] and "matplotlib is not installed" in note
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("argv,message", [
    (["--ops", "nope"], "argument --ops: unknown op 'nope'"),
    (["--ops", "conv,nope"], "argument --ops: unknown op 'nope'"),
    (["--dims", "0"], "argument --dims: expected a positive integer, got 0"),
    (["--dims", "four"], "argument --dims: expected a positive integer"),
    (["--methods", "numpy"], "argument --methods: unknown method 'numpy'"),
    (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
    (["--repeats", "0"], "argument --repeats: expected a positive integer"),
    (["--threads", "-2"], "argument --threads: expected a positive integer"),
    (["--noise", "-1"], "argument --noise: expected a percentage > 0"),
    (["--quick", "--full"], "argument --full: not allowed with argument --quick"),
    (["--ops", "conv", "--dims", "7"], "no benchmark case matches --ops conv --dims 7"),
])
def test_bad_options_name_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_cuda_without_gpu_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit):
        cli.main(["--device", "cuda"])
    assert "--device cuda: no CUDA device is available" in capsys.readouterr().err


def test_out_must_be_a_directory(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(SystemExit):
        cli.main(["--out", str(target), "--scale", "tiny"])
    assert f"--out {target}: exists and is not a directory" in capsys.readouterr().err


def test_list_prints_the_selection(capsys):
    assert cli.main(["--full", "--list"]) == 0
    assert capsys.readouterr().out.splitlines() == [c.name for c in cases.CASES]
    assert cli.main(["--list", "--ops", "conv_nd", "--dims", "4"]) == 0  # op names work too
    assert capsys.readouterr().out.splitlines() == [
        c.name for c in cases.select(quick=True, families=["conv"], dims=[4])]


def _bench_module(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pytest_benchmark_files_use_the_same_case_list():
    files = ("bench_conv", "bench_pool", "bench_interpolate", "bench_batch_norm", "bench_ops")
    seen = []
    for name in files:
        module = _bench_module(name)
        assert all(any(case is c for c in cases.CASES) for case in module.CASES), name
        assert module.PARAMS == runner.case_methods(module.CASES), name
        seen += module.CASES
    assert sorted(map(id, seen)) == sorted(map(id, cases.CASES))  # each case in one file
    targets = [c for c in cases.CASES if c.targets]
    assert targets and all("target" in c.tags for c in targets)
    _bench_module("bench_roofline")


def test_fresh_output_floor_script_runs(capsys, restore_threads):
    _bench_module("fresh_output_floor").main(["--scale", "tiny", "--rounds", "1",
                                              "--repeats", "1"])
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 6  # header, rule, one line per row
    assert all(line.count("|") == 7 for line in table)


def test_case_names_are_unique_and_every_family_is_covered():
    names = [c.name for c in cases.CASES]
    assert len(set(names)) == len(names) and len({c.id for c in cases.CASES}) == len(names)
    assert {c.n for c in cases.CASES} == {1, 2, 3, 4, 5}
    quick = cases.select(quick=True)
    assert {"conv", "max_pool", "interpolate", "batch_norm_act", "unet_train",
            "resnet_fwd"} <= {c.family for c in quick}


def test_every_case_runs_and_methods_agree_at_tiny_scale(restore_threads):
    """Each method of each case computes the same thing (at tiny sizes, one timed call)."""
    torch.set_num_threads(1)
    settings = runner.Settings(warmup=0, repeats=1, min_repeats=1, budget_s=0.0, scale="tiny")
    limits = {"gemm": {"gflops": 1.0}, "copy": {"gbps": 1.0}}
    methods = [m for m in runner.METHODS if m != "jax" or cli._jax_installed()]
    for case in cases.CASES:
        case = case.at_scale("tiny")
        rows, skipped = runner.run_case(case, methods, settings, limits)
        assert rows, (case.name, skipped)
        for entry in skipped:  # only "no ext kernel" may keep a method from running
            assert entry["reason"].startswith("no ext kernel"), entry
        for row in rows:
            assert not row["mismatch"], (case.name, row["method"], row["max_rel_err"])


@pytest.mark.parametrize("n", [4, 5])
def test_loop_of_conv3d_baselines_equal_torch(n, restore_threads):
    """Embed a 3-D problem in N dims (trailing size-1 dims, kernel 1) and compare with torch."""
    torch.set_num_threads(1)
    x = torch.randn(2, 3, 7, 6, 5, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 2, 3, dtype=torch.float64)
    wt = torch.randn(3, 4, 3, 2, 2, dtype=torch.float64)
    b = torch.randn(4, dtype=torch.float64)
    extra = (None,) * (n - 3)
    lift = (...,) + extra
    one, zero = (1,) * (n - 3), (0,) * (n - 3)
    for s, p, d, op in [(1, 1, 1, 0), (2, 0, 1, 1), (2, 2, 2, 1), (1, 0, 2, 0)]:
        got = conv_loop_of_conv3d(x[lift], w[lift], b, (s,) * 3 + one, (p,) * 3 + zero,
                                  (d,) * 3 + one)
        torch.testing.assert_close(got.reshape(got.shape[:5]), F.conv3d(x, w, b, s, p, d))
        got = conv_transpose_loop_of_conv3d(x[:, :, :4][lift], wt[lift], b, (s,) * 3 + one,
                                            (p,) * 3 + zero, (op,) * 3 + zero, (d,) * 3 + one)
        expected = F.conv_transpose3d(x[:, :, :4], wt, b, s, p, op, 1, d)
        torch.testing.assert_close(got.reshape(got.shape[:5]), expected)


@pytest.mark.skipif(not rss_probe_available(), reason="needs /proc/self/clear_refs")
def test_memory_probe_sees_a_fresh_allocation():
    result, extra = peak_extra_memory(lambda: torch.empty(16 * 2 ** 20).fill_(1.0), "cpu")
    assert result.numel() == 16 * 2 ** 20
    assert 60 * 2 ** 20 < extra < 90 * 2 ** 20  # 64 MiB written
    _, small = peak_extra_memory(lambda: torch.ones(8), "cpu")
    assert small < 8 * 2 ** 20


def test_timing_statistics_and_noise_flag():
    timing = Timing([1.0, 1.0, 1.0, 1.0, 2.0], warmup=1, other_load_pct=0.0)
    assert timing.median == 1.0 and timing.quartiles == (1.0, 1.0)
    assert timing.spread_pct == 0.0 and not timing.noisy(10.0)
    spread = Timing([1.0, 1.5, 2.0, 2.5, 3.0])
    assert spread.spread_pct == pytest.approx(50.0) and spread.noisy(10.0)
    assert Timing([1.0, 1.0, 1.0], other_load_pct=30.0).noisy(10.0)


def test_methods_are_timed_in_interleaved_rounds():
    calls, warmed = [], []

    def method(name, fails_at=None):
        def run():
            calls.append(name)
            if fails_at is not None and calls.count(name) == fails_at:
                raise RuntimeError(f"{name} broke")
        return run

    fns = {"a": method("a"), "b": method("b"), "bad": method("bad", fails_at=3)}
    timings, errors = measure_interleaved(fns, warmup=1, repeats=4, min_repeats=2,
                                          budget_s=10.0, on_warmup=warmed.append)
    assert warmed == ["a", "b", "bad", None]  # None: the timed rounds begin
    # warm-up calls in turn, then one call of each per round; "bad" drops out on its 3rd call
    assert calls == ["a", "b", "bad", "a", "b", "bad", "a", "b", "bad", "a", "b", "a", "b"]
    assert {k: len(t.samples) for k, t in timings.items()} == {"a": 4, "b": 4}
    assert str(errors["bad"]) == "bad broke" and set(errors) == {"bad"}
    # each stops on its own rule: after min_repeats once its own budget is spent
    timings, _ = measure_interleaved({"slow": lambda: time.sleep(0.02), "fast": lambda: None},
                                     warmup=0, repeats=6, min_repeats=2, budget_s=0.03)
    assert len(timings["slow"].samples) == 2 and len(timings["fast"].samples) == 6
    with pytest.raises(RuntimeError, match="once"):
        measure(method("once", fails_at=1), warmup=1, repeats=3)


def test_targets_are_evaluated_on_the_ext_row():
    case = next(c for c in cases.CASES if c.targets and c.family == "conv")
    rows = [{"method": "ext", "median_ms": 10.0, "pct_of_limit": 80.0, "limit": 400.0,
             "unit": "GFLOP/s"},
            {"method": "fallback", "median_ms": 12.0, "pct_of_limit": 67.0}]
    checks = runner.evaluate_targets(case, rows)
    assert [c["met"] for c in checks] == [False, True]  # 1.2x < 1.3x; 80 % >= 75 %
    assert checks[0]["note"] == "1.20x"
    assert runner.evaluate_targets(case, rows[1:])[0]["met"] is None


def test_write_atomic_keeps_a_normal_file_mode(tmp_path):
    path = tmp_path / "a.md"
    report.write_atomic(str(path), "text")
    assert path.read_text() == "text"
    assert os.stat(path).st_mode & 0o644 == 0o644
