"""Statistics of a phase: counts by status, throughput and latency percentiles.

Percentiles interpolate linearly between order statistics (numpy's default ``linear`` method):
for the values 1..100, p50 is 50.5 and p99 is 99.01.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from loadtest.engine import PhaseResult

QUANTILES = (50.0, 90.0, 99.0)


def percentiles(values: Sequence[float] | np.ndarray, qs: Iterable[float] = QUANTILES) -> dict:
    """``{"p50": ..., ...}`` of ``values``; None for each when there are none."""
    array = np.asarray(values, dtype=np.float64)
    keys = [f"p{q:g}" for q in qs]
    if array.size == 0:
        return dict.fromkeys(keys)
    return dict(zip(keys, (float(v) for v in np.percentile(array, list(qs))), strict=True))


def latency_summary_ms(latencies_s: Sequence[float] | np.ndarray) -> dict[str, float | None]:
    """Mean, p50, p90, p99, min and max in milliseconds."""
    array = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    summary: dict[str, float | None] = {"mean": float(array.mean()) if array.size else None}
    summary.update(percentiles(array))
    summary["min"] = float(array.min()) if array.size else None
    summary["max"] = float(array.max()) if array.size else None
    return summary


def status_label(status: int) -> str:
    if status == 0:
        return "no_response"
    if status == -1:
        return "dropped_by_client"
    return str(status)


def summarize(result: PhaseResult) -> dict[str, Any]:
    """The client's view of a phase, as plain JSON-able values."""
    ok = (result.status >= 200) & (result.status < 300)
    elapsed = result.elapsed_s
    by_status = Counter(status_label(int(s)) for s in result.status)
    summary: dict[str, Any] = {
        "requests": int(result.status.size),
        "ok": int(ok.sum()),
        "failed": int((~ok).sum()),
        "by_status": dict(sorted(by_status.items())),
        "transport_errors": dict(result.transport_errors),
        "elapsed_s": elapsed,
        "requests_per_s": float(ok.sum() / elapsed) if elapsed > 0 else 0.0,
        "sequences_per_s": float(result.sequences[ok].sum() / elapsed) if elapsed > 0 else 0.0,
        "sequences_ok": int(result.sequences[ok].sum()),
        "latency_ms": latency_summary_ms(result.latency[ok]),
        "client_cpu_s": result.client_cpu_s,
        "client_cpu_per_request_ms": (
            1000.0 * result.client_cpu_s / (result.status.size + result.warmup_requests)
            if result.status.size
            else None
        ),
        "warmup_requests": result.warmup_requests,
    }
    if result.lag.size and float(result.lag.max()) > 0:
        summary["client_lag_ms"] = latency_summary_ms(result.lag)
    if result.stopped:
        summary["stopped"] = result.stopped
    if result.error_bodies:
        summary["error_samples"] = [{"status": s, "body": b} for s, b in result.error_bodies]
    return summary
