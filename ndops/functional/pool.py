"""Placeholder: being written (replaced before commit)."""
def max_pool_nd(*a, **k): raise NotImplementedError
def max_unpool_nd(*a, **k): raise NotImplementedError
def avg_pool_nd(*a, **k): raise NotImplementedError
def adaptive_avg_pool_nd(*a, **k): raise NotImplementedError
def adaptive_max_pool_nd(*a, **k): raise NotImplementedError
