"""Packaging, extension loading, backend selection and the `python -m ndops` main job."""
import os
import subprocess
import sys

import pytest
import torch

import ndops
import ndops.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _python(code, cwd):
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)


def test_models_is_a_subpackage_never_top_level(tmp_path):
    import ndops.models
    assert ndops.models.__name__ == "ndops.models"
    result = _python("import models", cwd=tmp_path)
    assert result.returncode != 0 and "No module named 'models'" in result.stderr


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="CI builds the extension")
def test_extension_is_built_in_ci():
    assert ndops.has_extension(), ndops.load_error()


def test_functional_is_reexported():
    for name in F.__all__:
        assert getattr(ndops, name) is getattr(F, name)


def test_backend_context_manager_nests_and_restores():
    from ndops._backend import forced_backend
    assert forced_backend() is None
    with ndops.backend("fallback"):
        assert forced_backend() == "fallback"
        with ndops.backend("auto"):
            assert forced_backend() is None
        assert forced_backend() == "fallback"
    assert forced_backend() is None


@pytest.mark.skipif(not ndops.has_extension(), reason="needs the compiled extension")
def test_pool_default_is_size_dependent_at_low_n():
    # torch's kernels win on small inputs (fixed cost), the compiled ones from 2^17 elements
    assert ndops.available_backends("max_pool_nd", 2, "cpu", numel=1000)[0] == "native"
    assert ndops.available_backends("max_pool_nd", 2, "cpu", numel=2 ** 20)[0] == "ext"
    assert ndops.available_backends("avg_pool_nd", 4, "cpu", numel=10)[0] == "ext"
    x = torch.randn(2, 4, 256, 256)
    torch.testing.assert_close(ndops.max_pool_nd(x, 3, 2, 1), torch.nn.functional.max_pool2d(x, 3, 2, 1))


def test_backend_rejects_unknown_name():
    with pytest.raises(ValueError, match="ndops.backend: name must be one of"):
        with ndops.backend("cuda"):
            pass


def test_available_backends_orders_native_first_for_low_n():
    assert ndops.available_backends("conv_nd", 3)[0] == "native"
    assert "native" not in ndops.available_backends("conv_nd", 4)
    assert ndops.available_backends("conv_nd", 4)[-1] == "fallback"
    if ndops.has_extension():
        assert ndops.available_backends("pad_nd", 4)[0] == "ext"


def test_forcing_an_impossible_backend_names_op_and_n():
    x = torch.randn(1, 1, 3, 3, 3, 3)
    w = torch.randn(1, 1, 1, 1, 1, 1)
    with ndops.backend("native"):
        with pytest.raises(RuntimeError, match=r"ndops.conv_nd: backend 'native' cannot run.*N=4"):
            F.conv_nd(x, w)


def test_main_job_runs_and_passes():
    from ndops.__main__ import main
    assert main(["--ops", "pad_nd", "max_pool_nd", "--dims", "2", "4"]) == 0


def test_ci_reads_the_readme_test_command():
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert "<!-- ci: test command -->" in readme
    block = readme.split("<!-- ci: test command -->", 1)[1].split("```")[1]
    assert "--no-build-isolation" in block and "pytest" in block


def test_ci_cuda_stage_builds_with_cuda_and_checks_every_kernel():
    readme = open(os.path.join(ROOT, "README.md")).read()
    block = readme.split("<!-- ci: cuda build command -->", 1)[1].split("```")[1]
    for part in ("torch==2.14.1", "NDOPS_WITH_CUDA=1", "CUDA_HOME", "TORCH_CUDA_ARCH_LIST",
                 "--no-build-isolation", "python -m ndops.cuda_check", "pytest"):
        assert part in block, part


@pytest.mark.skipif(not ndops.has_extension(), reason="needs the compiled extension")
def test_every_op_has_a_cpu_kernel_and_cuda_check_explains_a_cpu_build(capsys):
    from ndops import _ext
    from ndops.cuda_check import main as cuda_check
    assert _ext.ops_without_kernel("CPU") == []
    if _ext.cuda_build_version() is None:
        assert cuda_check() == 1
        assert "built without CUDA kernels" in capsys.readouterr().err
    else:  # a CUDA build (CI's second stage): every op must have its CUDA kernel
        assert cuda_check() == 0, capsys.readouterr().err


@pytest.mark.skipif(not ndops.has_extension(), reason="needs the compiled extension")
def test_wrapper_compiles_fullgraph_and_follows_forced_backend():
    x = torch.randn(1, 2, 4, 3, 4, 3)
    compiled = torch.compile(lambda t: ndops.pad_nd(t, (1, 2) * 4, mode="reflect"),
                             fullgraph=True, backend="aot_eager")
    expected = ndops.pad_nd(x, (1, 2) * 4, mode="reflect")
    torch.testing.assert_close(compiled(x), expected)
    with ndops.backend("fallback"):
        torch.testing.assert_close(compiled(x), expected)


def test_setup_stops_at_once_without_torch():
    code = ("import sys; sys.modules['torch'] = None; sys.argv = ['setup.py', '--version']; "
            "exec(compile(open('setup.py').read(), 'setup.py', 'exec'))")
    result = _python(code, cwd=ROOT)
    assert result.returncode != 0
    assert "install torch first" in result.stderr.lower() or "Install torch first" in result.stderr
    assert "--no-build-isolation" in result.stderr


def test_readme_usage_example_runs():
    readme = open(os.path.join(ROOT, "README.md")).read()
    example = readme.split("```python", 1)[1].split("```", 1)[0]
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["z"].shape == (2, 8, 4, 8, 8, 8)
    torch.testing.assert_close(namespace["z2"], namespace["z"])


def test_readme_models_example_runs(tmp_path, monkeypatch):
    readme = open(os.path.join(ROOT, "README.md")).read()
    example = readme.split("## Models", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)  # the example saves a checkpoint folder
    namespace = {}
    exec(compile(example, "README.md", "exec"), namespace)
    assert namespace["samples"].shape == (4, 1, 8, 8)
    assert (tmp_path / "ckpt" / "config.json").exists()


def test_gpu_check_rejects_bad_options_and_stops_clearly_without_a_gpu():
    script = os.path.join(ROOT, "benchmarks", "gpu_check")
    bad = subprocess.run([script, "--bogus"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown option '--bogus'" in bad.stderr
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: gpu_check would build and run for real")
    result = subprocess.run([script, "--quick"], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "CPU build" in result.stderr or "is_available() is False" in result.stderr
