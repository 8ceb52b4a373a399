"""Splitting a phase across client processes."""

from __future__ import annotations

from loadtest.engine import Phase


def test_fewer_clients_than_processes_leaves_some_processes_idle() -> None:
    phase = Phase("closed", concurrency=3, duration_s=1.0)
    shares = [phase.share(index, 8).concurrency for index in range(8)]
    assert shares == [1, 1, 1, 0, 0, 0, 0, 0]
    assert sum(phase.share(i, 2).concurrency for i in range(2)) == 3


def test_open_loop_rate_is_split_evenly() -> None:
    phase = Phase("open", rate=100.0, duration_s=1.0)
    assert [phase.share(i, 4).rate for i in range(4)] == [25.0] * 4
