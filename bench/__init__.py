"""Benchmarks (not part of the installed package); see the module docstrings."""
