"""``ndops.bench``: the benchmark report (``ndops-bench``, ``python -m ndops.bench``)."""
