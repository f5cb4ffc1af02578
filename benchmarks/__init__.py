"""Benchmarks for refunddesk: `python -m benchmarks` (or `make bench`); figures, never asserts."""
