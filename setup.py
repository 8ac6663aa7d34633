"""Build ndops and its compiled extension ``ndops._C``.

torch must already be installed, and pip must be told not to isolate the build::

    pip install torch==2.13.0
    pip install --no-build-isolation .

Environment knobs (all optional):
    NDOPS_WITH_CUDA   1 = build the CUDA sources (fails loudly if impossible),
                      0 = never, unset = only when torch has CUDA and nvcc is found.
    TORCH_CUDA_ARCH_LIST  GPU architectures for a CUDA build (default "8.0;9.0").
    DEBUG=1           -O0 -g instead of -O3 -g0.
    MAX_JOBS          parallel compile jobs (default: cores, bounded by free memory).
"""
import glob
import os
import sys

from setuptools import setup

try:
    import torch
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension, CUDA_HOME
except ImportError:  # pragma: no cover - exercised by hand only
    sys.exit(
        "ndops: torch is not importable. Install torch first (for example "
        "`pip install torch==2.13.0`), then build ndops with "
        "`pip install --no-build-isolation .` so the build sees that torch."
    )

ROOT = os.path.dirname(os.path.abspath(__file__))


def _want_cuda():
    """Resolve NDOPS_WITH_CUDA into (build_cuda, reason)."""
    flag = os.environ.get("NDOPS_WITH_CUDA", "").strip().lower()
    torch_cuda = torch.version.cuda
    if flag in ("0", "false", "no", "off"):
        return False, "disabled by NDOPS_WITH_CUDA=0"
    if flag in ("1", "true", "yes", "on"):
        if torch_cuda is None:
            sys.exit("ndops: NDOPS_WITH_CUDA=1 but this torch is a CPU-only build; "
                     "install a CUDA build of torch (e.g. torch==2.14.1).")
        if CUDA_HOME is None:
            sys.exit("ndops: NDOPS_WITH_CUDA=1 but no CUDA toolkit was found; set CUDA_HOME "
                     "to the folder holding bin/nvcc and lib64/.")
        return True, "requested by NDOPS_WITH_CUDA=1"
    if torch_cuda is not None and CUDA_HOME is not None:
        return True, "torch has CUDA and nvcc was found"
    return False, "torch is CPU-only or nvcc was not found"


def _max_jobs():
    if "MAX_JOBS" in os.environ:
        return os.environ["MAX_JOBS"]
    cores = os.cpu_count() or 1
    try:  # roughly 2 GiB of memory per compiler process
        free_gib = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
        cores = max(1, min(cores, int(free_gib // 2)))
    except (ValueError, OSError):
        pass
    return str(cores)


def _extension():
    debug = os.environ.get("DEBUG", "0") == "1"
    build_cuda, cuda_reason = _want_cuda()
    cpp_sources = sorted(glob.glob("csrc/*.cpp") + glob.glob("csrc/cpu/*.cpp"))
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu") + glob.glob("csrc/cuda/*.cpp"))
    opt = ["-O0", "-g"] if debug else ["-O3", "-g0"]
    cxx_flags = opt + ["-std=c++20", "-fopenmp", "-DNDOPS_EXTENSION"]
    kwargs = dict(
        name="ndops._C",
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_link_args=["-fopenmp"],
    )
    if build_cuda:
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        # CUDA wheels of torch put the toolkit headers that ATen/cuda/CUDAContext.h needs
        # (cublas_v2.h, ...) under site-packages/nvidia/cu<major>/include.
        cuda_major = torch.version.cuda.split(".")[0]
        wheel_headers = []
        for folder in glob.glob(os.path.join(os.path.dirname(os.path.dirname(torch.__file__)),
                                             "nvidia", f"cu{cuda_major}", "include")):
            wheel_headers += ["-isystem", folder]
        nvcc_opt = ["-O0", "-g", "-lineinfo"] if debug else ["-O3"]  # nvcc has no -g0
        nvcc_flags = nvcc_opt + ["-std=c++20", "--expt-relaxed-constexpr"] + wheel_headers
        ext = CUDAExtension(
            sources=cpp_sources + cuda_sources,
            extra_compile_args={"cxx": cxx_flags + ["-DNDOPS_WITH_CUDA"] + wheel_headers,
                                "nvcc": nvcc_flags},
            **kwargs,
        )
    else:
        ext = CppExtension(sources=cpp_sources, extra_compile_args={"cxx": cxx_flags}, **kwargs)
    os.environ["MAX_JOBS"] = _max_jobs()
    print("ndops build configuration:")
    print(f"  torch          {torch.__version__} (CUDA: {torch.version.cuda})")
    print(f"  CUDA sources   {'yes' if build_cuda else 'no'} ({cuda_reason}); "
          f"{len(cuda_sources)} file(s) in csrc/cuda")
    if build_cuda:
        print(f"  CUDA_HOME      {CUDA_HOME}")
        print(f"  arch list      {os.environ['TORCH_CUDA_ARCH_LIST']}")
    print(f"  C++ sources    {len(cpp_sources)}")
    print(f"  optimization   {' '.join(opt)} (DEBUG={'1' if debug else '0'})")
    print(f"  MAX_JOBS       {os.environ['MAX_JOBS']}")
    return ext


setup(
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
