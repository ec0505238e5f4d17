"""A real Triton for tests and benchmarks: filled in by the next commit."""

from __future__ import annotations


def unavailable_reason() -> str:
    return "the Triton harness is not set up yet"
