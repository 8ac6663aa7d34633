"""The pure-PyTorch fallback: every op at any N, exact, built from torch's native 1-3-D ops.

Works wherever the compiled extension is not built. Each function takes the arguments already
normalized by ``ndops.functional`` (batched input, per-dim tuples of length N) and relies on
torch autograd for gradients. One module per op family.
"""
