from __future__ import annotations

import numpy as np
import pytest

from loadtest.engine import Phase, PhaseResult
from loadtest.report import sweep_levels
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


def _result() -> PhaseResult:
    # 4 ok (one with 3 sequences), one 429, one with no response; last answer at 2.0 s.
    return PhaseResult(
        sent=np.array([0.0, 0.5, 1.0, 1.5, 1.6, 1.7]),
        latency=np.array([0.010, 0.020, 0.030, 0.5, 0.001, 0.3]),
        status=np.array([200, 200, 200, 200, 429, 0]),
        sequences=np.array([1, 1, 3, 1, 1, 1]),
        pool_index=np.arange(6),
        lag=np.zeros(6),
        measure_start=100.0,
        transport_errors={"ServerDisconnectedError": 1},
        client_cpu_s=0.6,
    )


def test_summary_counts_throughput_and_latency_of_ok_requests_only() -> None:
    summary = summarize(_result())
    assert summary["requests"] == 6 and summary["ok"] == 4 and summary["failed"] == 2
    assert summary["by_status"] == {"200": 4, "429": 1, "no_response": 1}
    assert summary["elapsed_s"] == pytest.approx(2.0)
    assert summary["requests_per_s"] == pytest.approx(2.0)
    assert summary["sequences_per_s"] == pytest.approx(3.0)
    assert summary["latency_ms"]["max"] == pytest.approx(500.0)
    assert summary["latency_ms"]["p50"] == pytest.approx(25.0)
    assert summary["client_cpu_per_request_ms"] == pytest.approx(100.0)
    assert "client_lag_ms" not in summary


def test_results_of_workers_merge() -> None:
    merged = PhaseResult.merge([_result(), _result()], measure_start=100.0)
    assert merged.status.size == 12
    assert merged.transport_errors == {"ServerDisconnectedError": 2}
    assert merged.client_cpu_s == pytest.approx(1.2)


def test_phase_shares_split_the_load_between_processes() -> None:
    phase = Phase("closed", concurrency=5, duration_s=None, requests=7)
    shares = [phase.share(k, 3) for k in range(3)]
    assert [s.concurrency for s in shares] == [2, 2, 1]
    assert [s.requests for s in shares] == [3, 2, 2]
    open_loop = Phase("open", rate=90.0, duration_s=1.0)
    assert open_loop.share(1, 3).rate == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "closed", "concurrency": 0}, "concurrency"),
        ({"mode": "open", "rate": 0.0}, "rate"),
        ({"mode": "closed", "duration_s": None, "requests": None}, "duration"),
        ({"mode": "sideways"}, "mode"),
    ],
)
def test_impossible_phases_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Phase(**kwargs)


def test_sweep_levels_double_up_to_the_maximum() -> None:
    assert sweep_levels(1) == [1]
    assert sweep_levels(64) == [1, 2, 4, 8, 16, 32, 64]
    assert sweep_levels(24) == [1, 2, 4, 8, 16, 24]
