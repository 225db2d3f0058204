"""Benchmarks: each prints measured numbers and ratios against a baseline taken in the same run."""
import pathlib

# The project's shared data beside the repository checkout (../shared/data), read by the benchmarks.
SHARED_DATA = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data"
