"""Benchmarks: each prints measured numbers and ratios against a baseline taken in the same run."""
