"""End to end: ``python -m service`` as a real process on a free port, driven over HTTP by the
tritonclient HTTP client (JSON and binary), concurrent clients, and SIGTERM under load."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import tritonclient.http as triton

from export.exporter import export_model
from models.architectures import LSTMClassifier, LSTMClassifierConfig
from tests.service.conftest import FEATURES, Reference

pytestmark = pytest.mark.slow
TOL = 1e-5
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, repo: Path, *flags: str) -> None:
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
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._wait_ready(timeout_s=60)

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.process.stdout.read()}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)  # polling a readiness condition, bounded by the deadline
        raise RuntimeError("server did not become ready")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)
        return self.process.stdout.read() if self.process.stdout else ""  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def server(model_repository: Path) -> Iterator[Server]:
    running = Server(model_repository)
    yield running
    running.stop()


def test_tritonclient_json_and_binary(server: Server, reference: Reference) -> None:
    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("tiny_bi")
    metadata = client.get_model_metadata("tiny_bi")
    assert metadata["inputs"][0]["shape"] == [-1, -1, FEATURES]
    rng = np.random.default_rng(7)
    lengths = np.array([6, 2, 9], dtype=np.int32)
    batch = rng.standard_normal((3, 9, FEATURES)).astype(np.float32)
    for binary in (False, True):
        inputs = [
            triton.InferInput("inputs", list(batch.shape), "FP32"),
            triton.InferInput("lengths", [3], "INT32"),
        ]
        inputs[0].set_data_from_numpy(batch, binary_data=binary)
        inputs[1].set_data_from_numpy(lengths, binary_data=binary)
        outputs = [
            triton.InferRequestedOutput(name, binary_data=binary)
            for name in ("probs", "outputs", "final_h_1")
        ]
        result = client.infer("tiny_bi", inputs, outputs=outputs)
        for b, length in enumerate(lengths):
            expected = reference.run("tiny_bi", batch[b, :length])
            np.testing.assert_allclose(result.as_numpy("probs")[b], expected["probs"], atol=TOL)
            np.testing.assert_allclose(
                result.as_numpy("outputs")[b, :length], expected["outputs"], atol=TOL
            )
            assert not result.as_numpy("outputs")[b, length:].any()
            np.testing.assert_allclose(
                result.as_numpy("final_h_1")[:, b], expected["final_h_1"], atol=TOL
            )
    client.close()


def test_concurrent_clients_each_get_their_own_results(
    server: Server, reference: Reference
) -> None:
    rng = np.random.default_rng(8)
    sequences = [
        rng.standard_normal((int(n), FEATURES)).astype(np.float32)
        for n in rng.integers(1, 60, size=48)
    ]

    def one(sequence: np.ndarray) -> list[float]:
        body = {"sequences": [sequence.tolist()], "return": ["probabilities"]}
        response = httpx.post(f"{server.url}/v1/models/tiny_uni/predict", json=body, timeout=30)
        response.raise_for_status()
        return response.json()["results"][0]["probabilities"]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, sequences))
    for sequence, probabilities in zip(sequences, results, strict=True):
        np.testing.assert_allclose(
            probabilities, reference.run("tiny_uni", sequence)["probs"], atol=TOL
        )
    metrics = httpx.get(f"{server.url}/metrics").text
    sizes = [
        line
        for line in metrics.splitlines()
        if line.startswith('lstm_batch_size_sum{model="tiny_uni"}')
    ]
    counts = [
        line
        for line in metrics.splitlines()
        if line.startswith('lstm_batch_size_count{model="tiny_uni"}')
    ]
    total, batches = float(sizes[0].split()[-1]), float(counts[0].split()[-1])
    assert total == len(sequences) and batches <= total


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in metrics")


@pytest.fixture(scope="module")
def wide_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wider model (bidirectional [96, 96]): slow enough per run to keep a queue at SIGTERM."""
    repo = tmp_path_factory.mktemp("wide_repository")
    torch.manual_seed(1)
    config = LSTMClassifierConfig(FEATURES, (96, 96), 3, bidirectional=True)
    export_model(LSTMClassifier(config), repo, "tiny_bi", 1)
    return repo


def test_sigterm_under_load_answers_every_accepted_request(wide_repository: Path) -> None:
    # One sequence per batch and one batch at a time, so the queue is still deep at SIGTERM.
    server = Server(
        wide_repository,
        "--max-batch-size",
        "1",
        "--concurrent-batches",
        "1",
        "--drain-timeout-s",
        "60",
    )
    reference = Reference(wide_repository, ["tiny_bi"])
    rng = np.random.default_rng(9)
    requests = [rng.standard_normal((300, FEATURES)).astype(np.float32) for _ in range(40)]

    def one(sequence: np.ndarray) -> httpx.Response:
        body = {"sequences": [sequence.tolist()] * 4, "return": ["probabilities"]}
        return httpx.post(f"{server.url}/v1/models/tiny_bi/predict", json=body, timeout=60)

    pool = ThreadPoolExecutor(len(requests))
    futures = [pool.submit(one, s) for s in requests]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until every request has been accepted
        metrics = httpx.get(f"{server.url}/metrics").text
        if _metric(metrics, 'lstm_sequences_total{model="tiny_bi"}') == 4 * len(requests):
            break
    depth = _metric(metrics, 'lstm_queue_depth{model="tiny_bi"}')
    server.process.send_signal(signal.SIGTERM)
    responses = [f.result(timeout=60) for f in futures]
    exit_code = server.process.wait(60)
    log = server.stop()
    pool.shutdown()
    assert depth > 0, "the queue had drained before SIGTERM: the test proved nothing"
    assert [r.status_code for r in responses] == [200] * len(requests), log
    for sequence, response in zip(requests, responses, strict=True):
        expected = reference.run("tiny_bi", sequence)["probs"]
        for result in response.json()["results"]:
            np.testing.assert_allclose(result["probabilities"], expected, atol=TOL)
    # uvicorn re-raises the SIGTERM it caught once shutdown is done: -SIGTERM is a clean exit.
    assert exit_code in (0, -signal.SIGTERM), log
    assert "draining" in log and "stopped" in log


def test_refuses_to_start_without_a_repository(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "service", "--model-repository", str(tmp_path / "missing")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "LSTM_SERVING_LOG_FORMAT": "text"},
    )
    assert completed.returncode == 2
    assert "export.defaults" in completed.stderr


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
        metrics = httpx.get(f"{server.url}/metrics").text
        # Whichever worker answers, it reports what both workers counted.
        assert _metric(metrics, 'lstm_sequences_total{model="tiny_uni"}') == len(sequences)
    finally:
        log = server.stop()
    assert log.count("Application startup complete") == 2
