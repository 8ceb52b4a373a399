"""Benchmarks: ``python -m bench`` (the CPU suite, ``bench.run``) and ``bench/gpu_check.py``."""
