"""Benchmark setup: 2 threads (the project machine's cores) unless NDOPS_BENCH_THREADS says."""
import os

import torch

torch.set_num_threads(int(os.environ.get("NDOPS_BENCH_THREADS", "2")))

import sys

sys.path.insert(0, os.path.dirname(__file__))  # `import baselines`
