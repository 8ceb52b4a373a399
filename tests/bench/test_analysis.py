"""``bench.analysis``: FCFS padding, the padding comparison, ratios, the time breakdown,
targets, the multi-frontend case's batch ratios and targets, and the soak's phase figures and
recovery, on records built by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from bench.analysis import (
    breakdowns,
    fcfs_padding_efficiency,
    frontend_batch_ratios,
    frontend_targets,
    padding_comparison,
    ratios,
    recovery,
    soak_phase,
    targets,
    time_breakdown,
)
from bench.records import (
    CeilingCell,
    CeilingRow,
    Ceilings,
    CeilingSample,
    CpuUse,
    FrontendRow,
    FrontendsCase,
    Point,
    SingleSequence,
)
from bench.servers import ServerKind
from loadtest.engine import PhaseResult


def point(
    kind: ServerKind,
    seq_per_s: float,
    concurrency: int = 64,
    protocol: str = "v2-binary",
    server: dict[str, Any] | None = None,
    **client: Any,
) -> Point:
    summary = {"concurrency": concurrency, "sequences_per_s": seq_per_s, **client}
    summary.setdefault("latency_ms", {"mean": 1.0, "p50": 1.0, "p99": 2.0})
    if server is not None:
        summary["server"] = server
    return Point(kind=kind, protocol=protocol, client=summary)


def ceilings(best: float, single_ms: float = 1.0, at_batcher: float = 500.0) -> Ceilings:
    row = CeilingRow(64, "sorted", 0.9, {"ort_2x1": best})
    return Ceilings(
        ort_at_batcher_batches={"64 waiting": at_batcher},
        other_cpu_cores=0.0,
        sample=CeilingSample(64, "U[10,200]", 5),
        cores=2,
        parallel_runs=2,
        rows=[row],
        ort_best_seq_per_s=best,
        ort_best_at=CeilingCell(64, "sorted"),
        single_sequence=SingleSequence(single_ms, single_ms, 64),
    )


def phase_result(sent: list[float], latency: list[float], status: list[int]) -> PhaseResult:
    count = len(sent)
    return PhaseResult(
        sent=np.array(sent),
        latency=np.array(latency),
        status=np.array(status),
        sequences=np.ones(count, np.int64),
        pool_index=np.zeros(count, np.int64),
        lag=np.zeros(count),
        measure_start=0.0,
    )


def test_fcfs_padding_efficiency_on_known_lengths() -> None:
    assert fcfs_padding_efficiency([10, 10, 10, 10], 2) == 1.0
    # batches [10, 30] and [20, 20]: real 80, padded 60 + 40
    assert fcfs_padding_efficiency([10, 30, 20, 20], 2) == pytest.approx(0.8)
    assert fcfs_padding_efficiency([5, 15, 10], 64) == pytest.approx(30 / 45)
    assert fcfs_padding_efficiency([7, 3], 1) == 1.0


def test_padding_comparison_cuts_the_arrival_stream_at_the_batchers_mean_size() -> None:
    service = point("service", 100.0, server={"mean_batch_size": 2.2, "padding_efficiency": 0.9})
    service.arrival_lengths = [10, 30, 20, 20]
    no_batches = point("service", 100.0, concurrency=1, server={"mean_batch_size": 0})
    naive = point("naive", 50.0)
    (row,) = padding_comparison([service, no_batches, naive])
    assert (row.protocol, row.concurrency, row.mean_batch_size) == ("v2-binary", 64, 2.2)
    assert row.batcher_padding_efficiency == 0.9
    assert row.fcfs_same_batch_size == pytest.approx(0.8)  # batches of round(2.2) = 2
    assert row.fcfs_batch_64 == pytest.approx(80 / 120)


def test_ratios_divide_by_what_was_measured_at_the_same_point() -> None:
    points = [
        point("service", 300.0),
        point("naive", 100.0),
        point("http-ceiling", 600.0),
        point("service", 30.0, concurrency=1),
    ]
    high, low = ratios(points, ceilings(best=1000.0, at_batcher=500.0))
    assert (high.vs_naive, high.vs_http_ceiling) == (pytest.approx(3.0), pytest.approx(0.5))
    assert (high.vs_ort_ceiling, high.vs_ort_at_batcher_batches) == (0.3, 0.6)
    assert low.concurrency == 1 and low.vs_naive is None and low.vs_http_ceiling is None
    (alone,) = ratios([point("service", 300.0)], None)
    assert alone.vs_ort_ceiling is None and alone.vs_ort_at_batcher_batches is None


def test_time_breakdown_splits_the_request_latency() -> None:
    server = {
        "request_latency_ms": {"mean": 8.0},
        "queue_wait_ms": {"mean": 3.0},
        "batch_compute_ms": {"mean": 4.0},
        "compute_busy": 0.4,
    }
    p = point("service", 100.0, server=server, latency_ms={"mean": 10.0}, ok=100,
              elapsed_s=1.0, client_cpu_s=0.02)  # fmt: skip
    p.cpu = CpuUse(server_cores=0.5)
    b = time_breakdown(p)
    assert b is not None
    assert (b.protocol, b.concurrency, b.compute_busy) == ("v2-binary", 64, 0.4)
    assert b.outside_server_ms == pytest.approx(2.0)
    assert b.rest_in_server_ms == pytest.approx(1.0)
    assert b.server_cpu_ms_per_request == pytest.approx(5.0)
    assert b.client_cpu_ms_per_request == pytest.approx(0.2)
    assert time_breakdown(point("service", 1.0, latency_ms={"mean": 1.0})) is None
    assert breakdowns([p, point("naive", 1.0), point("service", 1.0)]) == [b]


def test_targets_are_met_or_missed_by_their_thresholds() -> None:
    service = point("service", 700.0, server={"mean_batch_size": 4.0, "padding_efficiency": 0.8})
    service.arrival_lengths = [10, 10]
    single = point("service", 100.0, concurrency=1, latency_ms={"p50": 4.5})
    points = [service, point("naive", 200.0), single]
    found = targets(points, ceilings(best=1000.0, single_ms=1.0), padding_comparison(points), 64)
    assert [(t.target, t.met) for t in found] == [
        ("service v2-binary c=64 >= 70% of the in-process ORT ceiling", True),
        ("service v2-binary c=64 >= 3x the naive baseline", True),
        ("padding efficiency >= 0.85 at c=64", False),
        ("c=1 p50 latency within a few ms (<= 3 ms) of in-process single-sequence", False),
    ]
    assert [t.value for t in found] == pytest.approx([0.7, 3.5, 0.8, 3.5])
    assert targets([point("naive", 1.0)], None, [], 64) == []


def frontend_row(frontends: int, engine: str, mode: str, mean_batch: float | None) -> FrontendRow:
    server = {"mean_batch_size": mean_batch} if mean_batch is not None else {}
    return FrontendRow(
        label=f"{frontends} {engine}", frontends=frontends, engine=engine, mode=mode,
        concurrency=64 if mode == "closed" else None,
        offered_rate=100.0 if mode == "open" else None, client={"server": server},
    )  # fmt: skip


def test_open_loop_batches_are_put_over_one_process_at_the_same_rate() -> None:
    rows = [
        frontend_row(2, "separate", "closed", 9.0),
        frontend_row(2, "separate", "open", 3.8),
        frontend_row(4, "separate", "open", 4.4),
        frontend_row(1, "in-process", "open", 4.0),
        frontend_row(4, "in-process", "open", 1.0),
        frontend_row(8, "separate", "open", None),  # no batches: nothing to compare
    ]
    ratios = [r.batch_vs_one_process for r in frontend_batch_ratios(rows)]
    assert ratios == pytest.approx([None, 0.95, 1.1, 1.0, 0.25, None])
    assert rows[1].batch_vs_one_process is None  # new rows; those given are left alone
    without_one_process = frontend_batch_ratios(rows[:3])
    assert [r.batch_vs_one_process for r in without_one_process] == [None, None, None]
    case = FrontendsCase("v2-binary", 64, 100.0, "test", frontend_batch_ratios(rows))
    assert [(t.target, t.met) for t in frontend_targets(case)] == [
        ("mean batch with 2 frontends feeding one engine within 10% of one process's at 100 "
         "req/s (ratio)", True),
        ("mean batch with 2 frontends feeding one engine not split among them: at least 90% "
         "of one process's at 100 req/s (ratio)", True),
        ("mean batch with 4 frontends feeding one engine within 10% of one process's at 100 "
         "req/s (ratio)", False),
        ("mean batch with 4 frontends feeding one engine not split among them: at least 90% "
         "of one process's at 100 req/s (ratio)", True),
    ]  # fmt: skip


def test_soak_phase_counts_every_outcome_and_checks_the_deadline() -> None:
    result = phase_result(
        sent=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
        latency=[0.010, 0.030, 0.001, 0.001, 0.0, 0.0],
        status=[200, 200, 429, 500, 0, -1],
    )
    result.transport_errors["ConnectionResetError"] = 1
    phase = soak_phase(result, offered_rate=7.0, seconds=2.0, deadline_s=0.03)
    assert phase.by_status == {-1: 1, 0: 1, 200: 2, 429: 1, 500: 1}
    assert (phase.arrivals, phase.accepted, phase.rejected_429_503) == (6, 2, 1)
    assert (phase.server_errors_5xx_not_503, phase.no_response, phase.dropped_by_client) == (
        1, 1, 1,
    )  # fmt: skip
    assert phase.achieved_send_rate == 2.5 and phase.accepted_per_s == 1.0
    assert phase.p50_accepted_ms == pytest.approx(20.0)
    assert phase.p99_accepted_ms == pytest.approx(29.8)
    assert phase.max_accepted_ms == pytest.approx(30.0)
    assert phase.p99_within_deadline and phase.transport_errors == {"ConnectionResetError": 1}
    assert not soak_phase(result, 7.0, 2.0, deadline_s=0.02).p99_within_deadline
    none = soak_phase(phase_result([0.0], [0.0], [429]), 1.0, 1.0, 10.0)
    assert none.p50_accepted_ms is None and not none.p99_within_deadline


def test_recovery_is_the_first_second_after_which_every_bin_is_good() -> None:
    # 4 bins of 1 s at an offered 2 req/s: bin 0 slow, bin 1 short of answers, bins 2-3 good.
    result = phase_result(
        sent=[0.1, 0.5, 1.2, 2.1, 2.6, 3.0, 3.5],
        latency=[0.5, 0.5, 0.01, 0.01, 0.01, 0.01, 0.01],
        status=[200, 200, 200, 200, 200, 200, 200],
    )
    found = recovery(result, offered_rate=2.0, baseline_p50_s=0.01)
    assert found.good_bins == [False, False, True, True]
    assert found.recovered_after_s == 2
    never = recovery(phase_result([0.5, 1.5], [1.0, 1.0], [200, 200]), 1.0, 0.01)
    assert never.good_bins == [False, False] and never.recovered_after_s is None
