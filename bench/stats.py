"""Percentiles (linear interpolation between closest ranks, like numpy's default) and summaries."""

from __future__ import annotations

import math
from typing import Iterable


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summary(values: Iterable[float], scale: float = 1000.0) -> dict[str, float]:
    """p50/p95/p99/mean/max/n of values (seconds), reported in milliseconds by default."""
    v = sorted(x * scale for x in values)
    if not v:
        return {"n": 0, "p50": math.nan, "p95": math.nan, "p99": math.nan, "mean": math.nan, "max": math.nan}
    return {"n": len(v), "p50": percentile(v, 50), "p95": percentile(v, 95), "p99": percentile(v, 99),
            "mean": sum(v) / len(v), "max": v[-1]}
