"""Benchmark suite (`make bench`): zg-encrypt / zg-decrypt against the 2013 recipe and native tools.

A package so that pytest imports its modules as ``benchmarks.*`` (no clash with tests/conftest.py)
and so that ``python3 -m benchmarks.corpus`` can build the corpus by hand.
"""
