"""Placeholder: being written (replaced before commit)."""
def batch_norm_nd(*a, **k): raise NotImplementedError
