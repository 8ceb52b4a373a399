"""``loadtest.stats``: percentiles, latency summaries in milliseconds, and a phase's summary
(throughput and latency of the requests answered 200)."""

from __future__ import annotations

import numpy as np
import pytest

from loadtest.engine import PhaseResult
from loadtest.stats import latency_summary_ms, percentiles, summarize


def test_percentiles_interpolate_linearly() -> None:
    values = np.arange(1, 101, dtype=float)
    assert percentiles(values) == pytest.approx({"p50": 50.5, "p90": 90.1, "p99": 99.01})
    assert percentiles([7.0]) == {"p50": 7.0, "p90": 7.0, "p99": 7.0}
    assert percentiles([], (50,)) == {"p50": None}


def test_latency_summary_is_in_milliseconds() -> None:
    summary = latency_summary_ms([0.001, 0.002, 0.003, 0.010])
    assert summary["min"] == pytest.approx(1.0)
    assert summary["max"] == pytest.approx(10.0)
    assert summary["mean"] == pytest.approx(4.0)
    assert summary["p50"] == pytest.approx(2.5)


def test_summary_counts_throughput_and_latency_of_ok_requests_only(
    phase_result: PhaseResult,
) -> None:
    summary = summarize(phase_result)
    assert summary["requests"] == 6 and summary["ok"] == 4 and summary["failed"] == 2
    assert summary["by_status"] == {"200": 4, "429": 1, "no_response": 1}
    assert summary["elapsed_s"] == pytest.approx(2.0)
    assert summary["requests_per_s"] == pytest.approx(2.0)
    assert summary["sequences_per_s"] == pytest.approx(3.0)
    assert summary["latency_ms"]["max"] == pytest.approx(500.0)
    assert summary["latency_ms"]["p50"] == pytest.approx(25.0)
    assert summary["client_cpu_per_request_ms"] == pytest.approx(100.0)
    assert "client_lag_ms" not in summary
