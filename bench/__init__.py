"""Benchmarks: speed and memory targets as ratios against plain Synapse in the same run."""
