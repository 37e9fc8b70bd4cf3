"""Benchmarks of ct2mr (speed and memory); results are recorded in bench/results/."""
