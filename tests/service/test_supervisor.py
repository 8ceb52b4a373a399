"""``python -m service --workers N`` as real processes (``service.supervisor``): N HTTP frontends
and one engine, which forms every batch from all of their traffic. Answers equal in-process ORT;
a killed frontend is replaced without losing another frontend's request; a killed or hung
engine is restarted while the frontends answer 503 with Retry-After, and its live gauges leave
``/metrics``; SIGTERM under load drains the frontends, then the engine, answering everything."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.support.ort_reference import Reference
from tests.support.servers import Server, metric, poll
from tests.support.tiny_repository import FEATURES
from tests.support.wide_model import (
    DEPTH,
    DRAIN_WAIT_S,
    MODEL,
    PER_REQUEST,
    SLOW,
    queued,
    send_load,
)

pytestmark = pytest.mark.slow


def roles(server: Server, metrics_dir: Path) -> tuple[list[int], list[int]]:
    """The supervisor's frontend and engine pids now: the engine is the process that writes
    the live gauges (readiness, queue depth), the frontends the other spawned children."""
    pid = server.process.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    spawned = [
        int(child)
        for child in children
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()
    ]
    gauges = {int(p.stem.rsplit("_", 1)[1]) for p in metrics_dir.glob("gauge_livemin_*.db")}
    engines = [child for child in spawned if child in gauges]
    return [child for child in spawned if child not in gauges], engines


def answer(server: Server) -> httpx.Response:
    """A small v1 request to ``MODEL`` on ``server``."""
    url = f"{server.url}/v1/models/{MODEL}/predict"
    return httpx.post(url, json={"sequences": [[[0.1] * FEATURES] * 3]}, timeout=30)


def metrics_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    return metrics_dir, {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}


def test_two_frontends_times_64_clients_answer_like_in_process_ort(
    model_repository: Path, reference: Reference
) -> None:
    rng = np.random.default_rng(11)
    sequences = [rng.standard_normal((int(n), FEATURES)).astype(np.float32) for n in
                 rng.integers(1, 60, 128)]  # fmt: skip
    server = Server(model_repository, "--workers", "2", "--max-batch-wait-ms", "5")
    try:

        def one(sequence: np.ndarray) -> list[float]:
            body = {"sequences": [sequence.tolist()], "return": ["probabilities"]}
            url = f"{server.url}/v1/models/tiny_bi/predict"
            answer = httpx.post(url, json=body, timeout=60)
            assert answer.status_code == 200, answer.text
            return answer.json()["results"][0]["probabilities"]

        with ThreadPoolExecutor(64) as clients:
            answers = list(clients.map(one, sequences))
        for sequence, probabilities in zip(sequences, answers, strict=True):
            expected = reference.run("tiny_bi", sequence)["probs"]
            np.testing.assert_allclose(probabilities, expected, atol=1e-5)
        metrics = server.metrics()
        # Both frontends counted their requests; the one engine counted every batch.
        assert metric(metrics, 'lstm_sequences_total{model="tiny_bi"}') == len(sequences)
        batched = metric(metrics, 'lstm_batch_size_sum{model="tiny_bi"}')
        assert batched == len(sequences)
    finally:
        log = server.stop()
    assert log.count("Application startup complete") == 2, log
    assert log.count("engine ready") == 1, log
    assert server.process.returncode == 0, log


def test_a_killed_frontend_is_replaced_and_no_other_frontends_request_is_lost(
    wide_repository: Path, pool: ThreadPoolExecutor, tmp_path: Path
) -> None:
    metrics_dir, env = metrics_env(tmp_path)
    server = Server(wide_repository, *SLOW, "--workers", "2", env=env)
    try:
        futures = send_load(server, pool, requests=12, sequences=4)
        poll(lambda: metric(server.metrics(), DEPTH, default=0) > 0, 60, "a queue in the engine")
        frontends, engines = roles(server, metrics_dir)
        assert len(frontends) == 2 and len(engines) == 1
        victim = frontends[0]
        os.kill(victim, signal.SIGKILL)
        results = [future.result() for future in futures]
        # The victim's clients lose their connection; every other request is answered.
        assert all(r == 200 or isinstance(r, httpx.TransportError) for r in results), results
        assert results.count(200) >= 1
        poll(lambda: len(roles(server, metrics_dir)[0]) == 2, 60, "a replacement frontend")
        assert roles(server, metrics_dir)[1] == engines, "the engine was not touched"
        assert answer(server).status_code == 200
        log = server.stop(DRAIN_WAIT_S)
    finally:
        server.kill()
    assert f"frontend {victim} died" in log, log
    assert server.process.returncode == 0, log


def test_a_killed_engine_is_restarted_meanwhile_503_and_its_gauges_leave_the_metrics(
    wide_repository: Path, pool: ThreadPoolExecutor, tmp_path: Path
) -> None:
    metrics_dir, env = metrics_env(tmp_path)
    server = Server(wide_repository, *SLOW, "--workers", "2", env=env)
    try:
        futures = send_load(server, pool, requests=16)
        batches = f'lstm_batches_total{{model="{MODEL}",outcome="ok"}}'

        def running_with_work_left() -> bool:
            # A batch counted (its counters exist) and many sequences still waiting, so the
            # kill below lands while the engine holds work, however slow this machine is.
            figures = server.metrics()
            return (
                metric(figures, batches, default=0) > 0 and metric(figures, DEPTH, default=0) >= 64
            )

        poll(running_with_work_left, 60, "a batch counted and a queue in the engine")
        _, (engine,) = roles(server, metrics_dir)
        os.kill(engine, signal.SIGKILL)
        results = [future.result() for future in futures]
        # What the engine held is failed at once with 503 (it is gone), never left hanging.
        assert set(results) <= {200, 503} and 503 in results, results
        # The frontends may answer 503 before the supervisor has reaped the engine, which is
        # when its live gauges go.
        poll(
            lambda: not list(metrics_dir.glob(f"gauge_live*_{engine}.db")),
            60,
            "the dead engine's live gauges removed",
        )
        assert list(metrics_dir.glob(f"counter_{engine}.db")), "a dead engine's totals stay"
        poll(lambda: len(roles(server, metrics_dir)[1]) == 1, 60, "a restarted engine")
        ready = poll(
            lambda: httpx.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200,
            60,
            "readiness after the restart",
        )
        assert ready
        assert metric(server.metrics(), DEPTH, default=0) == 0
        assert answer(server).status_code == 200
        log = server.stop(DRAIN_WAIT_S)
    finally:
        server.kill()
    assert f"(pid {engine}) exited with status -9" in log, log
    assert server.process.returncode == 0, log


def test_an_engine_whose_batch_hangs_exits_and_is_restarted(
    wide_repository: Path, tmp_path: Path
) -> None:
    # Every real batch of 500 steps outlives 1 ms: to the engine, its runtime hung.
    metrics_dir, env = metrics_env(tmp_path)
    flags = ("--workers", "2", "--max-batch-run-s", "0.001")
    server = Server(wide_repository, *flags, env=env)
    try:
        _, (engine,) = roles(server, metrics_dir)
        body = {"sequences": [[[0.1] * FEATURES] * 500]}
        url = f"{server.url}/v1/models/{MODEL}/predict"
        hung = httpx.post(url, json=body, timeout=60)
        assert hung.status_code == 500, hung.text
        assert hung.json()["error_type"] == "inference_failed"
        poll(lambda: roles(server, metrics_dir)[1] not in ([], [engine]), 60, "a new engine")

        def serving_again() -> bool:
            return httpx.get(f"{server.url}/v2/health/ready", timeout=5).status_code == 200

        poll(serving_again, 60, "readiness after the engine's restart")
        log = server.stop(DRAIN_WAIT_S)
    finally:
        server.kill()
    assert "engine failed" in log, log
    assert f"(pid {engine}) exited with status 4" in log, log
    assert server.process.returncode == 0, log


def test_sigterm_under_load_drains_the_frontends_then_the_engine_answering_everything(
    wide_repository: Path, pool: ThreadPoolExecutor
) -> None:
    server = Server(wide_repository, *SLOW, "--workers", "2")
    try:
        futures = send_load(server, pool, sequences=PER_REQUEST)
        poll(lambda: queued(server, 8 * PER_REQUEST), 60, "every request to be queued")
        log = server.stop(DRAIN_WAIT_S)
    finally:
        server.kill()
    assert [future.result() for future in futures] == [200] * 8
    assert server.process.returncode == 0, log
    # The engine stops last: after both frontends have drained.
    assert log.rindex("drained: answered") < log.index("engine draining"), log


def test_two_devices_run_two_engines_and_requests_spread_over_both(
    model_repository: Path, tmp_path: Path
) -> None:
    # Two "devices" on the CPU provider: the process model of a two-GPU machine, without GPUs.
    metrics_dir, env = metrics_env(tmp_path)
    server = Server(model_repository, "--workers", "2", "--devices", "[0,1]", env=env)
    try:
        frontends, engines = roles(server, metrics_dir)
        assert len(frontends) == 2 and len(engines) == 2
        sequences = [[[0.1] * FEATURES] * n for n in range(1, 97)]

        def one(sequence: list) -> int:
            url = f"{server.url}/v1/models/tiny_uni/predict"
            return httpx.post(url, json={"sequences": [sequence] * 4}, timeout=30).status_code

        with ThreadPoolExecutor(32) as clients:
            assert set(clients.map(one, sequences)) == {200}
        served = {pid: engine_sequences(metrics_dir, pid) for pid in engines}
        # Least loaded first: under 32 clients each engine takes a share of the traffic.
        assert sum(served.values()) == 4 * len(sequences)
        assert all(count > 0 for count in served.values()), served
        # /metrics sums them by device: both engines run on the CPU here (on GPUs: cuda:0, cuda:1).
        batched = 'lstm_batch_size_sum{device="cpu",model="tiny_uni"}'
        assert metric(server.metrics(), batched) == 4 * len(sequences)
    finally:
        log = server.stop()
    assert log.count("engine ready") == 2, log
    assert server.process.returncode == 0, log


def engine_sequences(metrics_dir: Path, pid: int) -> float:
    """Sequences the engine ``pid`` ran in batches (its own counter file)."""
    families = MultiProcessCollector.merge([str(metrics_dir / f"histogram_{pid}.db")])
    return sum(
        sample.value
        for family in families
        for sample in family.samples
        if sample.name == "lstm_batch_size_sum" and sample.labels.get("model") == "tiny_uni"
    )


def test_a_stuck_engine_is_killed_and_restarted(wide_repository: Path, tmp_path: Path) -> None:
    # SIGSTOP: the engine's process lives but its event loop no longer runs (as in a deadlock).
    metrics_dir, env = metrics_env(tmp_path)
    flags = ("--workers", "2", "--engine-timeout-s", "0.5")
    server = Server(wide_repository, *flags, env=env)
    try:
        _, (engine,) = roles(server, metrics_dir)
        os.kill(engine, signal.SIGSTOP)

        def refused() -> bool:  # the frontends stop sending to it after engine_timeout_s
            refusal = answer(server)
            return refusal.status_code == 503 and refusal.headers.get("Retry-After") == "1"

        poll(refused, 30, "503 while the engine is stuck")
        poll(lambda: roles(server, metrics_dir)[1] not in ([], [engine]), 60, "a new engine")
        poll(lambda: answer(server).status_code == 200, 60, "answers")
        log = server.stop(DRAIN_WAIT_S)
    finally:
        server.kill()
    assert f"(pid {engine}) stopped beating" in log, log
    assert server.process.returncode == 0, log
