"""``bench.records``: the JSON form of the records is that of the results files."""

from __future__ import annotations

import json

import numpy as np

from bench.records import (
    CpuUse,
    Point,
    RatioRow,
    Recovery,
    SoakPhase,
    Verification,
    to_json,
)


def test_a_point_is_loadtests_summary_with_the_benchs_figures_after_it() -> None:
    client = {"requests": 3, "concurrency": 16, "server": {"mean_batch_size": 2.0}}
    service = Point(
        kind="service",
        protocol="v1",
        client=client,
        cpu=CpuUse(server_cores=0.5, client_cores=0.25),
        arrival_lengths=[3, 4, 5],
        verification=Verification(3, True, 1e-6, []),
    )
    written = to_json(service)
    assert list(written) == ["requests", "concurrency", "server", "server_cpu_cores",
                             "client_cpu_cores", "protocol", "kind", "verification"]  # fmt: skip
    assert written["verification"] == {
        "checked_responses": 3, "passed": True, "max_abs_error_vs_ort": 1e-6, "failures": [],
    }  # fmt: skip
    assert "arrival_lengths" not in json.dumps(written)
    naive = to_json(Point(kind="naive", protocol="v1", client={"requests": 3}))
    assert naive["server"] is None and "server_cpu_cores" not in naive


def test_ratios_leave_out_what_was_not_measured() -> None:
    row = RatioRow("v2-json", 1, 10.0, vs_naive=2.0)
    assert to_json(row) == {
        "protocol": "v2-json", "concurrency": 1, "service_seq_per_s": 10.0, "vs_naive": 2.0,
    }  # fmt: skip


def test_a_soak_phase_has_its_recovery_figures_inline() -> None:
    phase = SoakPhase(
        offered_rate=10.0, seconds=1.0, arrivals=10, achieved_send_rate=10.0,
        by_status={200: 10}, accepted=10, rejected_429_503=0, server_errors_5xx_not_503=0,
        no_response=0, transport_errors={}, dropped_by_client=0, accepted_per_s=10.0,
        p50_accepted_ms=1.0, p99_accepted_ms=2.0, max_accepted_ms=3.0, p99_within_deadline=True,
    )  # fmt: skip
    assert "recovered_after_s" not in to_json(phase) and "recovery" not in to_json(phase)
    phase.recovery = Recovery(recovered_after_s=1, good_bins=[False, True])
    written = to_json(phase)
    assert list(written)[-3:] == ["p99_within_deadline", "recovered_after_s", "good_bins"]
    assert json.loads(json.dumps(written))["by_status"] == {"200": 10}


def test_numpy_values_become_plain() -> None:
    written = to_json({"a": np.float32(0.5), "b": [np.int64(3)], "c": np.arange(2), "d": (1, 2)})
    assert written == {"a": 0.5, "b": [3], "c": [0, 1], "d": [1, 2]}
    assert type(written["a"]) is float and type(written["b"][0]) is int
