"""Benchmarks: ``python -m benchmarks.<name>``. Each prints a table of ratios measured side by side
in one run and writes JSON into ``bench_results/`` (git-ignored). No benchmark asserts a time."""
