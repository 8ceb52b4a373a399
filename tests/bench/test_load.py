"""``bench.load``: the CPU of a point, the arrival stream, and the rejection probe (against a
stub HTTP server on loopback)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from bench.load import PhaseCpu, RejectionProbe, arrival_lengths
from loadtest.engine import PhaseResult
from loadtest.payloads import EncodedRequest


class FakeServer:
    def __init__(self, cpu: list[float | None]) -> None:
        self._cpu = iter(cpu)

    def cpu_s(self) -> float | None:
        return next(self._cpu)


def test_phase_cpu_divides_cpu_seconds_by_the_elapsed_time() -> None:
    cpu = PhaseCpu(FakeServer([10.0, 12.0]))  # type: ignore[arg-type]
    cpu.start()
    use = cpu.finish(elapsed_s=4.0, client_cpu_s=1.0)
    assert (use.server_cores, use.client_cores) == (0.5, 0.25)
    if use.machine_cores is not None:  # /proc/stat is there (Linux)
        assert use.other_cores == pytest.approx(max(0.0, use.machine_cores - 0.75))
    unknown = PhaseCpu(FakeServer([None, 3.0]))  # type: ignore[arg-type]
    unknown.start()
    use = unknown.finish(elapsed_s=2.0, client_cpu_s=1.0)
    assert use.server_cores is None and use.client_cores == 0.5 and use.machine_cores is None
    empty = PhaseCpu(FakeServer([1.0, 2.0]))  # type: ignore[arg-type]
    empty.start()
    assert empty.finish(elapsed_s=0.0, client_cpu_s=1.0).client_cores is None


def test_arrival_lengths_follow_the_send_order() -> None:
    result = PhaseResult(
        sent=np.array([0.3, 0.1, 0.2, 0.1]),
        latency=np.zeros(4),
        status=np.full(4, 200),
        sequences=np.ones(4, np.int64),
        pool_index=np.array([0, 1, 2, 3]),
        lag=np.zeros(4),
        measure_start=0.0,
    )
    assert arrival_lengths(result, [10, 20, 30, 40]) == [20, 40, 30, 10]  # ties keep order


@pytest.fixture
def rejecting_server() -> Iterator[tuple[str, threading.Event]]:
    """A loopback server answering every POST with 429 and Retry-After: 1; the event is set
    once it has answered twice."""
    answered = threading.Event()
    count = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(429)
            self.send_header("Retry-After", "1")
            self.send_header("Content-Length", "0")
            self.end_headers()
            count[0] += 1
            if count[0] >= 2:
                answered.set()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", answered
    server.shutdown()
    server.server_close()


def test_the_probe_notes_each_rejection_and_its_retry_after(
    rejecting_server: tuple[str, threading.Event],
) -> None:
    url, answered = rejecting_server
    request = EncodedRequest("/v2/models/m/infer", b"{}", {"Content-Type": "application/json"},
                             (1,))  # fmt: skip
    with RejectionProbe(url, request, every_s=0.01) as probe:
        assert answered.wait(10)
    assert len(probe.rejections) >= 2
    assert set(probe.rejections) == {(429, "1")}
