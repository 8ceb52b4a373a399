"""``python -m service --workers N`` as real processes (``service.workers``' ``WorkerPool``):
the workers share the port and ``/metrics`` sums what they counted; a worker killed with -9 is
replaced and its queue depth leaves ``/metrics`` while its counters stay."""

from __future__ import annotations

import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.support.servers import Server, metric, poll
from tests.support.tiny_repository import FEATURES
from tests.support.wide_model import DEPTH, DRAIN_WAIT_S, MODEL, SLOW, send_load

pytestmark = pytest.mark.slow


def test_several_workers_share_the_port_and_sum_their_metrics(model_repository: Path) -> None:
    server = Server(model_repository, "--workers", "2")
    try:
        sequences = [[[0.1] * FEATURES] * n for n in range(1, 41)]

        def one(sequence: list) -> int:
            body = {"sequences": [sequence]}
            url = f"{server.url}/v1/models/tiny_uni/predict"
            return httpx.post(url, json=body, timeout=30).status_code

        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(one, sequences)) == {200}
        metrics = server.metrics()
        # Whichever worker answers, it reports what both workers counted.
        assert metric(metrics, 'lstm_sequences_total{model="tiny_uni"}') == len(sequences)
    finally:
        log = server.stop()
    assert log.count("Application startup complete") == 2


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
        log = server.stop(DRAIN_WAIT_S)
    finally:
        server.kill()
    assert f"worker {victim} died" in log, log
    assert server.process.returncode == 0, log
