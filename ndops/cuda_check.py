"""``python -m ndops.cuda_check``: exit 0 when the extension has a CUDA kernel for every op.

Needs no GPU: it reads the dispatcher's registrations, so CI runs it on a GPU-less machine
after a CUDA build (NDOPS_WITH_CUDA=1) and benchmarks/gpu_check runs it before the GPU tests.
"""
import sys

import torch

from ndops import _ext


def main() -> int:
    if not _ext.has_extension():
        print(f"ndops.cuda_check: the extension is not loaded: {_ext.load_error()}", file=sys.stderr)
        return 1
    if _ext.cuda_build_version() is None:
        print("ndops.cuda_check: the extension was built without CUDA kernels (rebuild with "
              "NDOPS_WITH_CUDA=1 and CUDA_HOME set)", file=sys.stderr)
        return 1
    missing = _ext.ops_without_kernel("CUDA")
    if missing:
        print(f"ndops.cuda_check: {len(missing)} op(s) have no CUDA kernel: {', '.join(missing)}",
              file=sys.stderr)
        return 1
    print(f"ndops.cuda_check: every ndops op has a CUDA kernel (built with CUDA "
          f"{_ext.cuda_build_version()}, torch {torch.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
