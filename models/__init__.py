"""``ndops.models``: networks built on ndops' N-d ops (UNet, ResNet, diffusion).

Installed as the subpackage ``ndops.models`` (never as a top-level ``models``). The networks
themselves are the subject of a later milestone; this package exists so the layout and the
install mapping are in place and tested.
"""
__all__ = []
