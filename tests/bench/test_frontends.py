"""``bench.frontends``: the process models the multi-frontend case starts, and the case run end
to end on the tiny model (N frontends feeding one engine, one process, the old model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.frontends import measure_frontends, process_models
from bench.load import LoadPlan
from loadtest.distributions import parse_int_distribution


def test_each_count_feeds_one_engine_then_come_the_references() -> None:
    layouts = process_models([1, 2, 4])
    assert [(p.frontends, p.engine) for p in layouts] == [
        (1, "separate"), (2, "separate"), (4, "separate"), (1, "in-process"), (4, "in-process"),
    ]  # fmt: skip
    assert [p.label for p in layouts][:2] == ["1 frontend + engine", "2 frontends + engine"]
    assert layouts[1].flags == ["--workers", "2", "--engine", "separate"]
    assert [p.label for p in process_models([1])] == ["1 frontend + engine", "one process"]


@pytest.mark.slow
def test_the_case_runs_every_process_model_at_one_offered_rate(model_repository: Path) -> None:
    plan = LoadPlan(
        model="tiny_bi",
        protocols=("v2-binary",),
        concurrency=(4,),
        lengths=parse_int_distribution("5:20"),
        seconds=0.6,
        warmup_s=0.1,
        server_warmup_s=0.0,
        pool=16,
    )
    flags = ["--warmup-batch-sizes", "1", "--warmup-lengths", "3"]
    case = measure_frontends(model_repository, plan, [1, 2], features=5, service_flags=flags)
    assert (case.protocol, case.concurrency) == ("v2-binary", 4) and case.offered_rate > 0
    loads = [(r.label, r.mode) for r in case.rows]
    assert loads == [
        ("1 frontend + engine", "closed"), ("1 frontend + engine", "open"),
        ("2 frontends + engine", "closed"), ("2 frontends + engine", "open"),
        ("one process", "open"), ("2 workers, in-process (old)", "open"),
    ]  # fmt: skip
    for row in case.rows:
        assert row.client["ok"] > 0 and row.client["failed"] == 0, row.client
        assert row.mean_batch_size is not None and row.mean_batch_size >= 1
        assert row.cpu.server_cores is not None and row.cpu.server_cores > 0
        if row.mode == "open":
            assert row.offered_rate == case.offered_rate and row.batch_vs_one_process
        else:
            assert row.concurrency == 4 and row.batch_vs_one_process is None
    assert [r.batch_vs_one_process for r in case.rows if r.label == "one process"] == [1.0]
