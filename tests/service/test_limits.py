"""What one request may make the server build and send: the padded length ``T`` of a V2 batch,
per-step outputs trimmed to the real lengths, the response-size cap (checked before any
compute), and large bodies decoded in a codec process, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from tests.service.conftest import (
    FEATURES,
    GatedRuntime,
    Reference,
    app_client,
    gated_factory,
    small_settings,
)

pytestmark = pytest.mark.anyio
TOL = 1e-5
WIDTH = 16  # per-step output width D of tiny_bi: 2 directions x 8


def v2_json(batch: np.ndarray, lengths: list[int] | None = None, **extra: Any) -> dict[str, Any]:
    inputs: list[dict[str, Any]] = [
        {
            "name": "inputs",
            "shape": list(batch.shape),
            "datatype": "FP32",
            "data": batch.ravel().tolist(),
        }
    ]
    if lengths is not None:
        inputs.append(
            {"name": "lengths", "shape": [len(lengths)], "datatype": "INT32", "data": lengths}
        )
    return {"inputs": inputs, **extra}


def binary_request(steps: int, lengths: list[int]) -> tuple[bytes, dict[str, str]]:
    """A binary V2 body: ``inputs`` ``[B, steps, F]`` FP32 zeros and INT32 ``lengths``."""
    batch = np.zeros((len(lengths), steps, FEATURES), "<f4").tobytes()
    sizes = np.array(lengths, "<i4").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "inputs",
                    "shape": [len(lengths), steps, FEATURES],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(batch)},
                },
                {
                    "name": "lengths",
                    "shape": [len(lengths)],
                    "datatype": "INT32",
                    "parameters": {"binary_data_size": len(sizes)},
                },
            ],
            "outputs": [{"name": "probs"}],
        }
    )
    return header + batch + sizes, {"Inference-Header-Content-Length": str(len(header))}


async def test_v2_padded_length_over_the_limit_is_422_even_with_lengths(
    client: httpx.AsyncClient,
) -> None:
    # One real step padded to 301 (the limit is 300): the response used to be sized by T.
    content, headers = binary_request(steps=301, lengths=[1])
    response = await client.post("/v2/models/tiny_bi/infer", content=content, headers=headers)
    assert response.status_code == 422, response.text
    assert "T = 301" in response.json()["error"] and "300" in response.json()["error"]
    within, headers = binary_request(steps=300, lengths=[1])
    response = await client.post("/v2/models/tiny_bi/infer", content=within, headers=headers)
    assert response.status_code == 200, response.text


async def test_v2_padded_length_is_checked_from_the_shape_before_the_data(
    client: httpx.AsyncClient,
) -> None:
    # The data is not even numbers: only a check on the declared shape can answer "T".
    body = {
        "inputs": [
            {"name": "inputs", "shape": [1, 301, FEATURES], "datatype": "FP32",
             "data": ["x"] * (301 * FEATURES)},
            {"name": "lengths", "shape": [1], "datatype": "INT32", "data": [1]},
        ]
    }  # fmt: skip
    response = await client.post("/v2/models/tiny_bi/infer", json=body)
    assert response.status_code == 422
    assert "T = 301" in response.json()["error"]


async def test_v2_per_step_outputs_are_trimmed_to_the_longest_length(
    client: httpx.AsyncClient, reference: Reference
) -> None:
    rng = np.random.default_rng(7)
    lengths = [3, 7]
    batch = rng.standard_normal((2, 50, FEATURES)).astype(np.float32)  # padded to 50
    body = v2_json(batch, lengths, outputs=[{"name": "outputs"}, {"name": "probs"}])
    response = await client.post("/v2/models/tiny_bi/infer", json=body)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["outputs"]["shape"] == [2, 7, WIDTH]  # [B, max(lengths), D], not [B, 50, D]
    steps = np.array(outputs["outputs"]["data"], np.float32).reshape(2, 7, WIDTH)
    for b, length in enumerate(lengths):
        expected = reference.run("tiny_bi", batch[b, :length])
        np.testing.assert_allclose(steps[b, :length], expected["outputs"], atol=TOL)
        assert not steps[b, length:].any()  # exactly zero past the length


def _runtime(made: list[GatedRuntime], name: str) -> GatedRuntime:
    return next(r for r in made if r.spec.name == name)


async def test_v2_response_over_the_cap_is_422_before_any_compute(model_repository: Path) -> None:
    gate, made = threading.Event(), list[GatedRuntime]()
    gate.set()  # runs are not held: the test only counts them
    settings = small_settings(model_repository, max_response_bytes=4096, warmup=False)
    async with app_client(settings, gated_factory(gate, made)) as http:
        batch = np.zeros((2, 10, FEATURES), np.float32)
        # 2 x 10 x 16 values: ~5.8 kB estimated as JSON, ~1.7 kB as binary.
        as_json = v2_json(batch, outputs=[{"name": "outputs"}])
        response = await http.post("/v2/models/tiny_bi/infer", json=as_json)
        assert response.status_code == 422, response.text
        error = response.json()
        assert error["error_type"] == "response_too_large"
        assert "4096" in error["error"] and "max_response_bytes" in error["error"]
        assert _runtime(made, "tiny_bi").batches == []  # refused before any compute
        as_binary = v2_json(
            batch, outputs=[{"name": "outputs", "parameters": {"binary_data": True}}]
        )
        response = await http.post("/v2/models/tiny_bi/infer", json=as_binary)
        assert response.status_code == 200, response.text
        assert _runtime(made, "tiny_bi").batches == [[10, 10]]


async def test_v1_outputs_over_the_response_cap_are_422_before_any_compute(
    model_repository: Path,
) -> None:
    gate, made = threading.Event(), list[GatedRuntime]()
    gate.set()
    settings = small_settings(model_repository, max_response_bytes=8192, warmup=False)
    async with app_client(settings, gated_factory(gate, made)) as http:
        sequences = [[[0.1] * FEATURES] * 100] * 2
        body = {"sequences": sequences, "return": ["label", "outputs"]}
        response = await http.post("/v1/models/tiny_bi/predict", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error_type"] == "response_too_large"
        assert "8192" in response.json()["error"]
        assert _runtime(made, "tiny_bi").batches == []
        # Without the per-step outputs the same sequences are a small answer.
        response = await http.post("/v1/models/tiny_bi/predict", json={"sequences": sequences})
        assert response.status_code == 200, response.text


async def test_v1_per_step_outputs_of_256_sequences_of_1000_steps_are_refused_by_default(
    model_repository: Path,
) -> None:
    # Within every input limit, this used to build a ~784 MB JSON response (issue 11).
    settings = small_settings(model_repository, max_sequence_length=1000, max_batch_tokens=16384)
    assert settings.max_response_bytes == 64 * 1024 * 1024  # the default
    step = b"[" + b",".join([b"0.1"] * FEATURES) + b"]"
    sequence = b"[" + b",".join([step] * 1000) + b"]"
    body = b'{"return": ["outputs"], "sequences": [' + b",".join([sequence] * 256) + b"]}"
    async with app_client(settings) as http:
        response = await http.post("/v1/models/tiny_bi/predict", content=body)
        assert response.status_code == 422, response.text[:500]
        assert response.json()["error_type"] == "response_too_large"
        assert str(64 * 1024 * 1024) in response.json()["error"]


# -- large bodies are decoded in a codec process ---------------------------------------------------
def _large_v1_body(rng: np.random.Generator, sequences: int = 64, steps: int = 100) -> bytes:
    data = np.round(rng.standard_normal((sequences, steps, FEATURES)), 4).astype(np.float32)
    return orjson.dumps({"sequences": data.tolist(), "return": ["probabilities"]})


async def test_a_large_body_is_decoded_off_the_event_loop(
    model_repository: Path, reference: Reference
) -> None:
    rng = np.random.default_rng(11)
    body = _large_v1_body(rng)
    assert len(body) > 64 * 1024
    settings = small_settings(model_repository, codec_offload_min_bytes=64 * 1024)
    async with app_client(settings) as http:
        offload = http._transport.app.state.context.offload  # type: ignore[attr-defined]
        assert offload.pids == []  # started on first use
        first = await http.post("/v1/models/tiny_bi/predict", content=body)
        assert first.status_code == 200, first.text
        (pid,) = offload.pids
        sequences = orjson.loads(body)["sequences"]
        for result, sequence in zip(first.json()["results"], sequences, strict=True):
            expected = reference.run("tiny_bi", np.array(sequence, np.float32))
            np.testing.assert_allclose(result["probabilities"], expected["probs"], atol=TOL)

        os.kill(pid, signal.SIGSTOP)  # the codec process cannot make progress now
        try:
            large = asyncio.ensure_future(http.post("/v1/models/tiny_bi/predict", content=body))
            small = await http.post(
                "/v1/models/tiny_bi/predict", json={"sequences": [[[0.1] * FEATURES]]}
            )
            assert small.status_code == 200  # answered while the large body waits for decoding
            assert not large.done()
        finally:
            os.kill(pid, signal.SIGCONT)
        assert (await large).json() == first.json()
        assert offload.pids == [pid]


async def test_a_codec_call_past_the_deadline_is_504_and_its_process_replaced(
    model_repository: Path,
) -> None:
    body = _large_v1_body(np.random.default_rng(12))
    settings = small_settings(
        model_repository, codec_offload_min_bytes=64 * 1024, request_timeout_s=5.0
    )
    async with app_client(settings) as http:
        offload = http._transport.app.state.context.offload  # type: ignore[attr-defined]
        assert (await http.post("/v1/models/tiny_bi/predict", content=body)).status_code == 200
        (stuck,) = offload.pids
        os.kill(stuck, signal.SIGSTOP)
        try:
            response = await http.post("/v1/models/tiny_bi/predict", content=body)
        finally:
            with contextlib.suppress(ProcessLookupError):  # killed, as it should be
                os.kill(stuck, signal.SIGCONT)
        assert response.status_code == 504, response.text
        assert offload.pids == []  # the stuck process was killed
        assert (await http.post("/v1/models/tiny_bi/predict", content=body)).status_code == 200
        assert offload.pids and offload.pids != [stuck]


async def test_a_codec_process_that_died_while_idle_is_replaced(model_repository: Path) -> None:
    body = _large_v1_body(np.random.default_rng(13))
    settings = small_settings(model_repository, codec_offload_min_bytes=64 * 1024)
    async with app_client(settings) as http:
        offload = http._transport.app.state.context.offload  # type: ignore[attr-defined]
        assert (await http.post("/v1/models/tiny_bi/predict", content=body)).status_code == 200
        (dead,) = offload.pids
        os.kill(dead, signal.SIGKILL)
        os.waitid(os.P_PID, dead, os.WEXITED | os.WNOWAIT)  # it has exited (not reaped)
        assert (await http.post("/v1/models/tiny_bi/predict", content=body)).status_code == 200
        assert offload.pids and offload.pids != [dead]


async def test_decoding_and_encoding_in_a_codec_process_answer_as_inline(
    model_repository: Path, reference: Reference
) -> None:
    settings = small_settings(model_repository, codec_offload_min_bytes=0)  # every body
    rng = np.random.default_rng(14)
    batch = rng.standard_normal((2, 6, FEATURES)).astype(np.float32)
    async with app_client(settings) as http:
        offload = http._transport.app.state.context.offload  # type: ignore[attr-defined]
        body = v2_json(
            batch,
            [6, 4],
            outputs=[{"name": "outputs"}, {"name": "probs", "parameters": {"binary_data": True}}],
        )
        response = await http.post("/v2/models/tiny_bi/infer", json=body)
        assert response.status_code == 200, response.text
        assert len(offload.pids) == 1
        split = int(response.headers["Inference-Header-Content-Length"])
        steps_meta, probs_meta = orjson.loads(response.content[:split])["outputs"]
        probs = np.frombuffer(response.content[split:], "<f4").reshape(probs_meta["shape"])
        steps = np.array(steps_meta["data"], np.float32).reshape(steps_meta["shape"])
        for b, length in enumerate([6, 4]):
            expected = reference.run("tiny_bi", batch[b, :length])
            np.testing.assert_allclose(probs[b], expected["probs"], atol=TOL)
            np.testing.assert_allclose(steps[b, :length], expected["outputs"], atol=TOL)
        v1 = {"sequences": [batch[1, :4].tolist()], "return": ["logits", "outputs"]}
        result = (await http.post("/v1/models/tiny_bi/predict", json=v1)).json()["results"][0]
        expected = reference.run("tiny_bi", batch[1, :4])
        np.testing.assert_allclose(result["logits"], expected["logits"], atol=TOL)
        np.testing.assert_allclose(result["outputs"], expected["outputs"], atol=TOL)

        # Errors raised there reach the client as they would from here.
        bad = {"sequences": [[[0.1] * FEATURES] * 301]}
        response = await http.post("/v1/models/tiny_bi/predict", json=bad)
        assert response.status_code == 422
        assert response.json() == {
            "error": "sequences[0] has 301 steps; the limit is 300",
            "error_type": "invalid_input",
        }
        response = await http.post("/v2/models/tiny_bi/infer", content=b"{")
        assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
