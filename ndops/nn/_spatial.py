"""How an ``ndops.nn`` module learns its number of spatial dims N at construction.

N is ``spatial_dims=`` when given, else the length of any per-dim argument passed as a tuple
(kernel_size, stride, output_size, ...). All sources that are present must agree. Modules whose
parameter shapes depend on N (ConvNd, ConvTransposeNd) or whose input does not carry it (FoldNd)
require it; the others may leave it unknown and let the functional op infer it from the input
(``ndops._args``: N = input.dim() - 2).
"""
from .._args import declared_rank


def resolve_spatial_dims(module, spatial_dims, lengths, *, required):
    """N for ``module`` from ``spatial_dims`` and ``lengths`` (see ``ndops._args.tuple_lengths``), or None.

    Raises ValueError when the sources disagree, or when none is present and ``required``.
    """
    n = declared_rank(f"ndops.nn.{module}", spatial_dims=spatial_dims, lengths=lengths)
    if n is None and required:
        raise ValueError(f"ndops.nn.{module}: cannot tell the number of spatial dims N from int "
                         f"arguments; pass spatial_dims=N (e.g. spatial_dims=4) or per-dim "
                         f"tuples such as kernel_size=(3, 3, 3, 3)")
    return n
