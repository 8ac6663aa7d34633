"""Independent float64 brute-force references, written from the ops' definitions.

Direct loops over output positions and taps (tiny sizes only). They share no code with ndops,
so they can check it at N >= 4 where torch has no op to compare with.
"""
