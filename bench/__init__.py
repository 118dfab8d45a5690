"""Benchmarks (not part of the installed package); see the module docstrings.

Run each from the repository root as a module, ``python -m bench.<name>``, so that ``bench``
and the agents it references (``bench.agents:noop``) import without touching ``sys.path``.
"""
