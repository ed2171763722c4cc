"""Benchmarks: each prints its figures and ratios; BENCHMARKS.md records them with the machine and the command."""
