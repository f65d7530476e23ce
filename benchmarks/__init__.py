"""Benchmarks (`make bench`): each bench_*.py measures side by side in one run and writes
its figures to outputs/bench/<name>.json."""
