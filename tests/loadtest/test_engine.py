"""``loadtest.engine``: phases (refused when impossible, split across client processes), the
results of the processes merged, and stopping when the target is gone."""

from __future__ import annotations

import asyncio
import errno
from types import SimpleNamespace

import httpx
import pytest

from loadtest.distributions import parse_int_distribution
from loadtest.engine import (
    ClientConfig,
    LoadGenerator,
    Phase,
    PhaseResult,
    RefusalWatch,
    connection_refused,
)
from loadtest.payloads import PoolSpec
from tests.support.servers import free_port


def test_fewer_clients_than_processes_leaves_some_processes_idle() -> None:
    phase = Phase("closed", concurrency=3, duration_s=1.0)
    shares = [phase.share(index, 8).concurrency for index in range(8)]
    assert shares == [1, 1, 1, 0, 0, 0, 0, 0]
    assert sum(phase.share(i, 2).concurrency for i in range(2)) == 3


def test_a_request_count_goes_only_to_processes_with_clients() -> None:
    phase = Phase("closed", concurrency=1, duration_s=None, requests=3)
    assert [phase.share(i, 2).requests for i in range(2)] == [3, 0]
    phase = Phase("closed", concurrency=3, duration_s=None, requests=10)
    assert [phase.share(i, 4).requests for i in range(4)] == [4, 3, 3, 0]
    phase = Phase("open", rate=10.0, duration_s=None, requests=10)
    assert [phase.share(i, 4).requests for i in range(4)] == [3, 3, 2, 2]


def test_open_loop_rate_is_split_evenly() -> None:
    phase = Phase("open", rate=100.0, duration_s=1.0)
    assert [phase.share(i, 4).rate for i in range(4)] == [25.0] * 4


def test_results_of_workers_merge(phase_result: PhaseResult) -> None:
    merged = PhaseResult.merge([phase_result, phase_result], measure_start=100.0)
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


def _refusal(client: str, port: int) -> BaseException:
    """The exception a client raises when nothing listens on ``port`` (on 127.0.0.1)."""
    url = f"http://127.0.0.1:{port}/v2/health/ready"

    async def with_aiohttp() -> None:
        import aiohttp

        async with aiohttp.ClientSession() as session, session.get(url):
            pass

    try:
        if client == "httpx":
            httpx.get(url, timeout=5)
        else:
            asyncio.run(with_aiohttp())
    except Exception as error:
        return error
    raise AssertionError(f"{url} answered")


@pytest.mark.parametrize("client", ["httpx", "aiohttp"])
def test_a_refused_connection_is_told_apart_from_other_errors(client: str) -> None:
    if client == "aiohttp":
        pytest.importorskip("aiohttp")
    assert connection_refused(_refusal(client, free_port()))
    assert not connection_refused(httpx.ReadTimeout("slow"))
    assert not connection_refused(ConnectionResetError(errno.ECONNRESET, "reset"))


def test_the_watch_trips_on_refusals_in_a_row_only() -> None:
    flag = SimpleNamespace(value=0)
    watch = RefusalWatch(3, flag)
    for refused in (True, True, False, True, True):  # an answer in between starts over
        watch.observe(refused)
    assert not watch.stopped and watch.reason is None
    watch.observe(True)
    assert watch.stopped and flag.value == 1
    assert watch.reason is not None and "refused 3 connections in a row" in watch.reason


def test_a_watch_with_no_limit_never_trips() -> None:
    watch = RefusalWatch(0, SimpleNamespace(value=0))
    for _ in range(1000):
        watch.observe(True)
    assert not watch.stopped and watch.reason is None


@pytest.mark.slow
def test_a_phase_against_a_closed_port_stops_after_the_refusals() -> None:
    """Two processes, a bound of a million requests: the phase ends once a worker has had 7
    refused in a row, the other worker stops on the shared flag, and the result says why."""
    lengths, one = parse_int_distribution("5"), parse_int_distribution("1")
    spec = PoolSpec("v1", "m", 3, lengths, one, 2, seed=0)
    config = ClientConfig(f"http://127.0.0.1:{free_port()}", spec, stop_after_refused=7)
    with LoadGenerator(config, processes=2) as generator:
        result = generator.run(Phase("closed", concurrency=2, duration_s=None, requests=10**6))
        assert result.stopped is not None and "refused 7 connections" in result.stopped
        assert 7 <= result.status.size <= 2 * 7  # one client per process, each stops by 7
        assert set(result.status.tolist()) == {0}
        # the flag is lowered for the next phase: 3 refusals do not stop it
        again = generator.run(Phase("closed", concurrency=1, duration_s=None, requests=3))
    assert again.status.size == 3 and again.stopped is None
