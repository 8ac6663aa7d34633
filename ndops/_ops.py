"""Placeholder: torch.library registrations (autograd + fake kernels) for torch.ops.ndops."""
