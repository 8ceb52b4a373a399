"""``python -m service`` as real processes: the exit status after a SIGTERM drain (0 only when
every request in flight was answered, with a log line saying how many), with one process and
with workers; a worker killed with -9 is replaced and its queue depth leaves /metrics; the cap
on connections."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from prometheus_client.multiprocess import MultiProcessCollector

from export.exporter import export_model
from models.architectures import LSTMClassifier, LSTMClassifierConfig
from tests.service.conftest import FEATURES

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
MODEL = "wide"
DEPTH = f'lstm_queue_depth{{model="{MODEL}"}}'
SEQUENCES = f'lstm_sequences_total{{model="{MODEL}"}}'
DRAINED = re.compile(r"drained: answered (\d+) of (\d+) requests in flight")
# One sequence per run, one run at a time: a few requests keep the queue busy for seconds.
SLOW = ("--max-batch-size", "1", "--concurrent-batches", "1")
PER_REQUEST = 16


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def metric(text: str, name: str, default: float | None = None) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    if default is not None:  # a labelled series appears with its first value
        return default
    raise AssertionError(f"{name} not in metrics")


def poll(condition, timeout_s: float, what: str):  # type: ignore[no-untyped-def]
    """``condition()``'s first true value, polled until ``timeout_s`` (a bounded deadline)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)  # polling an observable condition, bounded by the deadline
    raise AssertionError(f"timed out waiting for {what}")


class Server:
    def __init__(self, repo: Path, *flags: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            sys.executable, "-m", "service",
            "--model-repository", str(repo),
            "--port", str(self.port),
            "--provider", "cpu",
            "--warmup-batch-sizes", "[1]",
            "--warmup-lengths", "[4]",
            "--log-format", "text",
            *flags,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group: stop() ends its workers too
        )
        try:
            poll(self._ready, 60, "the server to be ready")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{self.output()}")
        try:
            return httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=10).text

    def terminate(self) -> int:
        """SIGTERM, then the exit status (a negative status: killed by that signal)."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(90)

    def output(self) -> str:
        return self.process.stdout.read() if self.process.stdout else ""  # type: ignore[union-attr]

    def stop(self) -> None:
        """Kill whatever is left of the server (the supervisor and its workers)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)


@pytest.fixture(scope="module")
def wide_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bidirectional [96, 96] model: slow enough per run to keep a queue while we look."""
    repo = tmp_path_factory.mktemp("wide_repository")
    torch.manual_seed(1)
    export_model(LSTMClassifier(LSTMClassifierConfig(FEATURES, (96, 96), 3, True)), repo, MODEL, 1)
    return repo


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(16) as executor:
        yield executor


def send_load(
    server: Server, pool: ThreadPoolExecutor, requests: int = 8, sequences: int = PER_REQUEST
) -> list[Future[int | BaseException]]:
    rng = np.random.default_rng(3)
    body = {"sequences": rng.standard_normal((sequences, 500, FEATURES)).round(3).tolist()}

    def one() -> int | BaseException:
        try:
            url = f"{server.url}/v1/models/{MODEL}/predict"
            return httpx.post(url, json=body, timeout=90).status_code
        except httpx.TransportError as error:  # cut off: the server closed the connection
            return error

    return [pool.submit(one) for _ in range(requests)]


def accepted(server: Server, total: float) -> bool:
    return metric(server.metrics(), SEQUENCES, default=0) == total


def test_sigterm_after_a_clean_drain_exits_0_and_logs_what_was_answered(
    wide_repository: Path, pool: ThreadPoolExecutor
) -> None:
    server = Server(wide_repository, *SLOW, "--drain-timeout-s", "60")
    try:
        futures = send_load(server, pool, sequences=2 * PER_REQUEST)
        poll(lambda: accepted(server, 8 * 2 * PER_REQUEST), 60, "every request to be queued")
        depth = metric(server.metrics(), DEPTH)
        status = server.terminate()
        log = server.output()
    finally:
        server.stop()
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
        poll(lambda: accepted(server, 8 * 4 * PER_REQUEST), 60, "every request to be queued")
        status = server.terminate()
        log = server.output()
    finally:
        server.stop()
    results = [f.result() for f in futures]
    # Cut off: the connection closed, or uvicorn's own 500 after it cancelled the request.
    cut_off = [r for r in results if r != 200]
    assert cut_off, f"every request was answered before the drain timeout: {results}"
    assert status == 1, log  # before: -15 with one process, 0 with workers
    counts = [tuple(map(int, m.groups())) for m in DRAINED.finditer(log)]
    assert counts and sum(total - answered for answered, total in counts) >= len(cut_off), log


def worker_queue_depths(metrics_dir: Path) -> dict[int, float]:
    """Each live worker's own queue depth, read from its gauge file."""
    depths = {}
    for path in metrics_dir.glob("gauge_livesum_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        try:
            families = MultiProcessCollector.merge([str(path)], accumulate=False)
        except FileNotFoundError:  # removed meanwhile: that worker is gone
            continue
        for family in families:
            for sample in family.samples:
                if sample.name == "lstm_queue_depth" and sample.labels.get("model") == MODEL:
                    depths[pid] = sample.value
    return depths


def test_a_killed_worker_is_replaced_and_its_queue_depth_leaves_the_metrics(
    wide_repository: Path, pool: ThreadPoolExecutor, tmp_path: Path
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    server = Server(wide_repository, *SLOW, "--workers", "2", env=env)
    try:
        futures = send_load(server, pool, requests=12)
        busy = poll(
            lambda: [pid for pid, depth in worker_queue_depths(metrics_dir).items() if depth > 0],
            60,
            "a worker with sequences waiting",
        )
        victim = busy[0]
        os.kill(victim, signal.SIGKILL)
        for future in futures:  # the victim's requests fail, the other worker's are answered
            future.result()
        # The survivor's queue is empty once its requests are answered; the victim's last
        # depth must not be summed any more (before: it stayed there for good).
        poll(lambda: metric(server.metrics(), DEPTH) == 0, 30, "the queue depth to return to 0")
        assert not list(metrics_dir.glob(f"gauge_live*_{victim}.db"))
        assert list(metrics_dir.glob(f"counter_{victim}.db")), "a dead worker's totals stay"
        # A replacement started: two workers serve again.
        poll(lambda: len(worker_queue_depths(metrics_dir)) == 2, 60, "a replacement worker")
        ok = httpx.post(
            f"{server.url}/v1/models/{MODEL}/predict",
            json={"sequences": [[[0.1] * FEATURES] * 3]},
            timeout=30,
        )
        assert ok.status_code == 200
        status = server.terminate()
        log = server.output()
    finally:
        server.stop()
    assert f"worker {victim} died" in log, log
    assert status == 0, log


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
        status = server.terminate()
    finally:
        server.stop()
    assert status == 0, server.output()
