"""Timing helper shared by the benchmarks and examples (private)."""
import time

import numpy as np


def median_time(f, repeat=5):
    """Median wall time of ``repeat`` calls of ``f()`` after one warm-up call."""
    f()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))
