"""End to end: ``python -m service`` as a real process on a free port, driven over HTTP by the
tritonclient HTTP client (JSON and binary), concurrent clients, and SIGTERM under load."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from tests.support.ort_reference import Reference
from tests.support.servers import Server, metric, poll
from tests.support.tiny_repository import FEATURES
from tests.support.wide_model import DEPTH, MODEL, SLOW, queued

pytestmark = pytest.mark.slow
TOL = 1e-5


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
    metrics = server.metrics()
    total = metric(metrics, 'lstm_batch_size_sum{model="tiny_uni"}')
    batches = metric(metrics, 'lstm_batch_size_count{model="tiny_uni"}')
    assert total == len(sequences) and batches <= total


def test_sigterm_under_load_answers_every_accepted_request(wide_repository: Path) -> None:
    # One sequence per batch and one batch at a time, so the queue is still deep at SIGTERM.
    server = Server(wide_repository, *SLOW, "--drain-timeout-s", "60")
    reference = Reference(wide_repository, [MODEL])
    rng = np.random.default_rng(9)
    requests = [rng.standard_normal((300, FEATURES)).astype(np.float32) for _ in range(40)]

    def one(sequence: np.ndarray) -> httpx.Response:
        body = {"sequences": [sequence.tolist()] * 4, "return": ["probabilities"]}
        return httpx.post(f"{server.url}/v1/models/{MODEL}/predict", json=body, timeout=60)

    pool = ThreadPoolExecutor(len(requests))
    try:
        futures = [pool.submit(one, s) for s in requests]
        poll(lambda: queued(server, 4 * len(requests)), 30, "every request accepted")
        depth = metric(server.metrics(), DEPTH)
        server.process.send_signal(signal.SIGTERM)
        responses = [f.result(timeout=60) for f in futures]
        exit_code = server.process.wait(60)
        log = server.stop()
    finally:
        server.kill()
        pool.shutdown()
    assert depth > 0, "the queue had drained before SIGTERM: the test proved nothing"
    assert [r.status_code for r in responses] == [200] * len(requests), log
    for sequence, response in zip(requests, responses, strict=True):
        expected = reference.run(MODEL, sequence)["probs"]
        for result in response.json()["results"]:
            np.testing.assert_allclose(result["probabilities"], expected, atol=TOL)
    # uvicorn re-raises the SIGTERM it caught once shutdown is done: -SIGTERM is a clean exit.
    assert exit_code in (0, -signal.SIGTERM), log
    assert "draining" in log and "stopped" in log
