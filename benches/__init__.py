"""Benchmarks of nvtopo against the allocators it replaces (run with ``make bench``)."""
