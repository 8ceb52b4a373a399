"""Streams against a real server with 2 frontends and one engine, through ``tritonclient``'s own
sequence arguments (``infer(..., sequence_id=, sequence_start=, sequence_end=)``): each chunk on a
new connection, so chunks of one stream reach either frontend, and the engine's state carries
them on; interleaved streams answer what their whole sequences answer."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.support.ort_reference import Reference
from tests.support.servers import Server, metric
from tests.support.tiny_repository import FEATURES

pytestmark = pytest.mark.slow
STATES = ("final_c_1", "final_h_1")


def test_tritonclient_streams_through_two_frontends_equal_the_whole_sequences(
    model_repository: Path, reference: Reference
) -> None:
    import tritonclient.http as triton

    rng = np.random.default_rng(8)
    streams = {sid: rng.standard_normal((40, FEATURES)).astype(np.float32) for sid in (11, 12, 13)}
    server = Server(model_repository, "--workers", "2")
    host = server.url.removeprefix("http://")
    try:
        got: dict[int, list[np.ndarray]] = {sid: [] for sid in streams}
        last: dict[int, dict[str, np.ndarray]] = {}
        for k, (lo, hi) in enumerate([(0, 7), (7, 8), (8, 25), (25, 40)]):
            for sid, x in streams.items():
                client = triton.InferenceServerClient(host)  # a new connection per chunk
                inputs = [triton.InferInput("inputs", [1, hi - lo, FEATURES], "FP32")]
                inputs[0].set_data_from_numpy(x[np.newaxis, lo:hi], binary_data=k % 2 == 0)
                wanted = [triton.InferRequestedOutput(n) for n in ("outputs", *STATES)]
                result = client.infer(
                    "tiny_uni",
                    inputs,
                    outputs=wanted,
                    sequence_id=sid,
                    sequence_start=k == 0,
                    sequence_end=k == 3,
                )
                client.close()
                got[sid].append(result.as_numpy("outputs")[0])
                last[sid] = {s: result.as_numpy(s)[:, 0] for s in STATES}
        for sid, x in streams.items():
            whole = reference.run("tiny_uni", x)
            np.testing.assert_allclose(np.concatenate(got[sid]), whole["outputs"], atol=1e-5)
            for state in STATES:
                np.testing.assert_allclose(last[sid][state], whole[state], atol=1e-5)
        metrics = server.metrics()
        assert metric(metrics, 'lstm_stream_events_total{event="started"}') == 3
        assert metric(metrics, 'lstm_stream_events_total{event="ended"}') == 3
        assert metric(metrics, "lstm_streams_live") == 0
        sequences = metric(metrics, 'lstm_sequences_total{model="tiny_uni"}')
        assert sequences == 12  # every chunk counted once, whichever frontend took it
    finally:
        log = server.stop()
    assert log.count("Application startup complete") == 2, log


def chunk(x: np.ndarray, sequence_id: str, start: bool, end: bool) -> dict:
    return {"sequences": [x.tolist()], "return": ["probabilities"], "sequence_id": sequence_id,
            "sequence_start": start, "sequence_end": end}  # fmt: skip


def test_a_planned_restart_keeps_the_streams_in_the_state_directory(
    model_repository: Path, reference: Reference, tmp_path: Path
) -> None:
    x = np.random.default_rng(9).standard_normal((30, FEATURES)).astype(np.float32)
    url = "/v1/models/tiny_uni/predict"
    flags = ("--workers", "2", "--stream-state-dir", str(tmp_path / "streams"))
    first = Server(model_repository, *flags)
    try:
        answer = httpx.post(first.url + url, json=chunk(x[:12], "kept", True, False), timeout=30)
        assert answer.status_code == 200, answer.text
    finally:
        log = first.stop()
    assert "kept 1 live streams for the next start" in log, log
    second = Server(model_repository, *flags)
    try:
        answer = httpx.post(second.url + url, json=chunk(x[12:], "kept", False, True), timeout=30)
        assert answer.status_code == 200, answer.text
        probabilities = answer.json()["results"][0]["probabilities"]
    finally:
        log = second.stop()
    assert "took up 1 live streams" in log, log
    np.testing.assert_allclose(probabilities, reference.run("tiny_uni", x)["probs"], atol=1e-5)


def test_without_a_state_directory_a_restart_drops_the_streams(model_repository: Path) -> None:
    x = np.zeros((4, FEATURES), np.float32)
    url = "/v1/models/tiny_uni/predict"
    first = Server(model_repository)
    try:
        assert httpx.post(first.url + url, json=chunk(x, "lost", True, False)).status_code == 200
    finally:
        first.stop()
    second = Server(model_repository)
    try:
        late = httpx.post(second.url + url, json=chunk(x, "lost", False, False))
    finally:
        second.stop()
    assert late.status_code == 404 and late.json()["error_type"] == "stream_not_found"
