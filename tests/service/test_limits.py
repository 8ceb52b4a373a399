"""What one request may make the server build and send, across the service through its ASGI app
(``service.frontend.api.validation``, ``service.frontend.api.v2_codec``, ``service.settings``): the
padded length ``T`` of a V2 batch, per-step outputs trimmed to the real lengths, and the
response-size cap (checked before any compute). Large bodies decoded off the event loop:
``frontend/api/test_offload.py``."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from tests.support.ort_reference import Reference
from tests.support.service_app import GatedRuntime, app_client, gated_factory
from tests.support.tiny_repository import FEATURES, tiny_settings
from tests.support.v2_bodies import v2_json

pytestmark = pytest.mark.anyio
TOL = 1e-5
WIDTH = 16  # per-step output width D of tiny_bi: 2 directions x 8


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
    settings = tiny_settings(model_repository, max_response_bytes=4096, warmup=False)
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
    settings = tiny_settings(model_repository, max_response_bytes=8192, warmup=False)
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
    settings = tiny_settings(model_repository, max_sequence_length=1000, max_batch_tokens=16384)
    assert settings.max_response_bytes == 64 * 1024 * 1024  # the default
    step = b"[" + b",".join([b"0.1"] * FEATURES) + b"]"
    sequence = b"[" + b",".join([step] * 1000) + b"]"
    body = b'{"return": ["outputs"], "sequences": [' + b",".join([sequence] * 256) + b"]}"
    async with app_client(settings) as http:
        response = await http.post("/v1/models/tiny_bi/predict", content=body)
        assert response.status_code == 422, response.text[:500]
        assert response.json()["error_type"] == "response_too_large"
        assert str(64 * 1024 * 1024) in response.json()["error"]
