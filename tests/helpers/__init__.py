"""Helpers shared by several test files (random cases, forward + gradient runs, error tests);
importable as ``helpers.<topic>`` because conftest puts tests/ on sys.path."""
