"""Small timing helpers shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def time_calls(fn: Callable[[], object], *, warmup: int, repeats: int) -> np.ndarray:
    """Wall seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        out[i] = time.perf_counter() - start
    return out


def throughput(fn: Callable[[], object], *, calls: int, concurrency: int) -> float:
    """Calls per second of ``fn`` with ``concurrency`` callers keeping requests in flight (after one warm call each)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(lambda _: fn(), range(concurrency)))
        start = time.perf_counter()
        list(pool.map(lambda _: fn(), range(calls)))
        return calls / (time.perf_counter() - start)


def percentile_ms(seconds: np.ndarray, q: float) -> float:
    return float(np.percentile(seconds, q) * 1000.0)
