"""``python -m service`` as a real process (``service.frontend.server``'s ``DrainingServer``, under
``service.workers`` with ``--workers``): the exit status after a SIGTERM drain (0 only when every
request in flight was answered, with a log line saying how many), with one process and with
workers; the cap on connections."""

from __future__ import annotations

import re
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.support.servers import Server, metric, poll
from tests.support.wide_model import DEPTH, DRAIN_WAIT_S, PER_REQUEST, SLOW, queued, send_load

pytestmark = pytest.mark.slow
DRAINED = re.compile(r"drained: answered (\d+) of (\d+) requests in flight")


def test_sigterm_after_a_clean_drain_exits_0_and_logs_what_was_answered(
    wide_repository: Path, pool: ThreadPoolExecutor
) -> None:
    server = Server(wide_repository, *SLOW, "--drain-timeout-s", "60")
    try:
        futures = send_load(server, pool, sequences=2 * PER_REQUEST)
        poll(lambda: queued(server, 8 * 2 * PER_REQUEST), 60, "every request to be queued")
        depth = metric(server.metrics(), DEPTH)
        log = server.stop(DRAIN_WAIT_S)
    finally:
        server.kill()
    status = server.process.returncode
    assert depth > 0, "the queue had drained before SIGTERM: the test proved nothing"
    assert [f.result() for f in futures] == [200] * 8, log
    assert status == 0, log  # before: -15, killed by its own SIGTERM (143 in a shell)
    drained = DRAINED.search(log)
    assert drained is not None, log
    answered, in_flight = map(int, drained.groups())
    assert answered == in_flight >= 1, log


@pytest.mark.parametrize("workers", ["1", "2"])
def test_requests_cut_off_by_the_drain_timeout_make_the_exit_status_non_zero(
    wide_repository: Path, pool: ThreadPoolExecutor, workers: str
) -> None:
    server = Server(wide_repository, *SLOW, "--drain-timeout-s", "0", "--workers", workers)
    try:
        # Enough work that the queues outlast the signal's way to each worker (~0.2 s).
        futures = send_load(server, pool, sequences=4 * PER_REQUEST)
        poll(lambda: queued(server, 8 * 4 * PER_REQUEST), 60, "every request to be queued")
        log = server.stop(DRAIN_WAIT_S)
    finally:
        server.kill()
    status = server.process.returncode
    results = [f.result() for f in futures]
    # Cut off: the connection closed, or uvicorn's own 500 after it cancelled the request.
    cut_off = [r for r in results if r != 200]
    assert cut_off, f"every request was answered before the drain timeout: {results}"
    assert status == 1, log  # before: -15 with one process, 0 with workers
    counts = [tuple(map(int, m.groups())) for m in DRAINED.finditer(log)]
    assert counts and sum(total - answered for answered, total in counts) >= len(cut_off), log


def test_connections_past_max_connections_get_503(model_repository: Path) -> None:
    server = Server(model_repository, "--max-connections", "2")
    live = f"{server.url}/v2/health/live"
    try:
        idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
        # Two idle connections hold the cap: a third is refused at once, before any body.
        poll(lambda: httpx.get(live).status_code == 503, 10, "a 503 past the cap")
        for connection in idle:
            connection.close()
        poll(lambda: httpx.get(live).status_code == 200, 10, "a 200 once they closed")
        log = server.stop(DRAIN_WAIT_S)
    finally:
        server.kill()
    assert server.process.returncode == 0, log
