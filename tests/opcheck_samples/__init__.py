"""opcheck sample inputs, one module per op family: each defines SAMPLES, a dict from op name
to functions returning a tuple of positional arguments (fresh tensors on each call)."""
