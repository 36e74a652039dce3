"""Benchmarks: print measured figures (and optionally write them as JSON); they assert nothing."""
