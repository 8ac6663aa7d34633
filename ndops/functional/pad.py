"""Placeholder: being written (replaced before commit)."""
def pad_nd(*a, **k): raise NotImplementedError
