"""Benchmarks: each module measures nbdeploy side by side with a reference, in one run,
and writes JSON + a markdown table under ``benchmarks/results/``."""
