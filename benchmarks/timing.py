"""Side-by-side timing for the benchmarks: rounds that call every candidate in turn, so drift in
the machine's load hits them all alike (this box is noisy: compare the ratios of one run)."""

from __future__ import annotations

import statistics
import time


def interleaved_medians(calls: dict, rounds: int, warmup: bool = True) -> dict:
    """{name: fn()} -> {name: median seconds over `rounds` rounds}; one untimed call each first if `warmup`."""
    if warmup:
        for fn in calls.values():
            fn()
    times: dict = {k: [] for k in calls}
    for _ in range(rounds):
        for k, fn in calls.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}
