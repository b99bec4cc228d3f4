"""One way to summarize a run, shared by every load generator of the harness."""
from __future__ import annotations

import math
from typing import Iterable


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list (0 when empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, min(len(sorted_values), math.ceil(pct / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def summarize(latencies_s: Iterable[float], window_s: float, errors: int = 0,
              error_kinds: dict[str, int] | None = None) -> dict:
    """The numbers every row reports: successful requests per second of the window,
    p50/p99 of the successful requests' latencies, and the errors."""
    values = sorted(latencies_s)
    return {
        "requests": len(values),
        "rps": round(len(values) / window_s, 1) if window_s > 0 else 0.0,
        "p50_ms": round(percentile(values, 50) * 1000, 2),
        "p99_ms": round(percentile(values, 99) * 1000, 2),
        "errors": errors,
        "error_kinds": dict(error_kinds or {}),
    }
