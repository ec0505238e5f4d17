"""Measuring: the timing harness, accuracy metrics, comparisons and their plots."""
