"""Helpers of the property-based tests and of the reader fuzzing (also used by
benchmarks/bench_fuzz.py)."""
