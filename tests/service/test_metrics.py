"""Prometheus metrics (``service.metrics``): what the app reports for its batches, and metrics
summed across worker processes, where a worker that died without cleaning up (``kill -9``)
keeps its counters in the sum but not its live gauges (queue depth, readiness)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.metrics import ServiceMetrics
from tests.support.servers import ROOT, metric
from tests.support.service_app import app_client
from tests.support.tiny_repository import FEATURES, tiny_settings

STEP = [0.1] * FEATURES
QUEUED = 'lstm_queue_depth{device="cpu",model="bilstm"} 370.0'
"""The live gauge the worker below sets, as the summed exposition prints it."""
WORKER = """
import sys
from service.metrics import ServiceMetrics
metrics = ServiceMetrics()
metrics.queue_depth.labels("bilstm", "cpu").set(370)
metrics.model_ready.labels("bilstm", "1").set(1)
metrics.requests.labels("bilstm", "v1", "200").inc()
print("ready", flush=True)
sys.stdin.read()  # serve until told to stop
"""


@pytest.mark.anyio
async def test_metrics_report_batches_padding_and_provider(client: httpx.AsyncClient) -> None:
    body = {"sequences": [[STEP] * n for n in (3, 5)]}
    assert (await client.post("/v1/models/tiny_bi/predict", json=body)).status_code == 200
    await client.post("/v1/models/tiny_bi/predict", json={"sequences": []})
    text = (await client.get("/metrics")).text
    assert 'lstm_requests_total{model="tiny_bi",protocol="v1",status="200"} 1.0' in text
    assert 'lstm_requests_total{model="tiny_bi",protocol="v1",status="422"} 1.0' in text
    assert 'lstm_sequences_total{model="tiny_bi"} 2.0' in text
    # The batch figures name the device they ran on, and the model's info says it too.
    assert 'lstm_batch_real_steps_total{device="cpu",model="tiny_bi"} 8.0' in text
    assert 'lstm_batch_size_count{device="cpu",model="tiny_bi"}' in text
    assert 'lstm_batch_padding_efficiency_bucket{device="cpu",le="1.0",model="tiny_bi"}' in text
    assert (
        'lstm_model_info{device="cpu",model="tiny_bi",provider="CPUExecutionProvider",'
        'version="1"} 1.0' in text
    )


@pytest.mark.anyio
async def test_batch_figures_name_the_gpu_their_session_runs_on(
    model_repository: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CUDA is stood in for (no GPU here): every session asked for CUDA claims to run on it, on
    # the device the settings name. The label comes from the runtime, through the batcher.
    from contract.providers import CUDA
    from service.engine.runtime import session as session_module

    real = session_module.create_session

    def on_cuda(source: Any, preference: str, *args: Any, **kwargs: Any) -> Any:
        session, provider = real(source, "cpu", *args, **kwargs)
        return session, CUDA if preference == "cuda" else provider

    monkeypatch.setattr(session_module, "create_session", on_cuda)
    settings = tiny_settings(model_repository, provider="cuda", cuda_device_id=3)
    async with app_client(settings) as http:
        body = {"sequences": [[STEP] * n for n in (3, 5)]}
        assert (await http.post("/v1/models/tiny_bi/predict", json=body)).status_code == 200
        text = (await http.get("/metrics")).text
    assert metric(text, 'lstm_batch_size_sum{device="cuda:3",model="tiny_bi"}') == 2
    assert metric(text, 'lstm_batch_real_steps_total{device="cuda:3",model="tiny_bi"}') == 8
    assert metric(text, 'lstm_batch_size_sum{device="cpu"}', default=0) == 0
    assert metric(text, 'lstm_model_info{device="cuda:3",provider="CUDAExecutionProvider"}') == 2


@pytest.fixture
def metrics_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def worker(metrics_dir: Path) -> Iterator[subprocess.Popen[str]]:
    """A process writing its metrics to ``metrics_dir``, as a worker does."""
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    yield process
    process.kill()
    process.wait(10)


def lines(text: bytes, prefix: str) -> list[str]:
    return [line for line in text.decode().splitlines() if line.startswith(prefix)]


def test_a_killed_workers_gauges_leave_the_sum_and_its_counters_stay(
    worker: subprocess.Popen[str], metrics_dir: Path
) -> None:
    metrics = ServiceMetrics()
    alive = metrics.render()
    assert lines(alive, "lstm_queue_depth{") == [QUEUED]
    worker.send_signal(signal.SIGKILL)
    # Wait until it has exited, but leave it unreaped: a zombie is as dead as a reaped process.
    os.waitid(os.P_PID, worker.pid, os.WEXITED | os.WNOWAIT)
    gone = metrics.render()
    assert lines(gone, "lstm_queue_depth{") == []  # before: 370 for as long as the server ran
    assert lines(gone, "lstm_model_ready{") == []
    assert lines(gone, "lstm_requests_total{") == [
        'lstm_requests_total{model="bilstm",protocol="v1",status="200"} 1.0'
    ]
    worker.wait(10)
    assert not list(metrics_dir.glob(f"gauge_live*_{worker.pid}.db"))
    assert list(metrics_dir.glob(f"counter_{worker.pid}.db"))


def test_a_running_workers_gauges_stay(worker: subprocess.Popen[str]) -> None:
    for _ in range(3):  # every render checks, and never drops a live process's values
        text = ServiceMetrics().render()
        assert lines(text, "lstm_queue_depth{") == [QUEUED]
