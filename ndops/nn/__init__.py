"""Placeholder: ndops.nn modules (being written)."""
