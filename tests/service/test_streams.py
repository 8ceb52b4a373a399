"""Streams across the service through its ASGI app (the V2 sequence extension, and the same
fields in v1): chunks of a stream, in any sizes and interleaved with other streams, answer what
the whole sequence answers at once; and each way a chunk can be wrong is a 4xx naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.ort_reference import Reference
from tests.support.service_app import app_client
from tests.support.tiny_repository import FEATURES, tiny_settings

pytestmark = pytest.mark.anyio
TOL = 1e-5
STATES = ("final_c_0", "final_h_0", "final_c_1", "final_h_1")


def chunk_body(chunk: np.ndarray, sequence_id: Any, start: bool, end: bool) -> dict[str, Any]:
    """A V2 JSON request of one chunk ``(L, F)`` of stream ``sequence_id``, as tritonclient
    sends its sequence arguments (request parameters)."""
    return {
        "inputs": [
            {
                "name": "inputs",
                "shape": [1, len(chunk), FEATURES],
                "datatype": "FP32",
                "data": chunk.ravel().tolist(),
            },
        ],  # fmt: skip
        "outputs": [{"name": "outputs"}, *({"name": s} for s in STATES)],
        "parameters": {"sequence_id": sequence_id, "sequence_start": start, "sequence_end": end},
    }


def outputs_of(answer: httpx.Response) -> dict[str, np.ndarray]:
    assert answer.status_code == 200, answer.text
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in answer.json()["outputs"]}


async def test_chunks_of_interleaved_streams_answer_as_the_whole_sequences(
    client: httpx.AsyncClient, reference: Reference
) -> None:
    rng = np.random.default_rng(21)
    streams = {sid: rng.standard_normal((int(rng.integers(20, 60)), FEATURES)).astype(np.float32)
               for sid in (7, "sensor-b", 2**63)}  # fmt: skip
    cuts = {sid: np.sort(rng.choice(np.arange(1, len(x)), 3, replace=False))
            for sid, x in streams.items()}  # fmt: skip
    pieces = {sid: np.split(x, cuts[sid]) for sid, x in streams.items()}
    got: dict[Any, list[np.ndarray]] = {sid: [] for sid in streams}
    finals: dict[Any, dict[str, np.ndarray]] = {}
    for k in range(4):  # chunk k of every stream, the streams interleaved
        for sid, chunks in pieces.items():
            body = chunk_body(chunks[k], sid, start=k == 0, end=k == 3)
            out = outputs_of(await client.post("/v2/models/tiny_uni/infer", json=body))
            got[sid].append(out["outputs"][0])
            finals[sid] = {s: out[s][:, 0] for s in STATES}
    for sid, x in streams.items():
        whole = reference.run("tiny_uni", x)
        np.testing.assert_allclose(np.concatenate(got[sid]), whole["outputs"], atol=TOL)
        for state in STATES:
            np.testing.assert_allclose(finals[sid][state], whole[state], atol=TOL)
    # Ended: a further chunk of any of them has no stream to continue.
    late = await client.post("/v2/models/tiny_uni/infer", json=chunk_body(streams[7][:2], 7,
                                                                         False, False))  # fmt: skip
    assert late.status_code == 404
    assert late.json()["error_type"] == "stream_not_found"
    assert "sequence_start" in late.json()["error"]


async def test_v1_streams_with_the_same_fields(
    client: httpx.AsyncClient, reference: Reference
) -> None:
    x = np.random.default_rng(3).standard_normal((30, FEATURES)).astype(np.float32)
    url = "/v1/models/tiny_uni/predict"
    probabilities = None
    for k, chunk in enumerate(np.split(x, [11, 19])):
        body = {"sequences": [chunk.tolist()], "sequence_id": "v1-stream",
                "sequence_start": k == 0, "sequence_end": k == 2}  # fmt: skip
        answer = await client.post(url, json=body)
        assert answer.status_code == 200, answer.text
        probabilities = answer.json()["results"][0]["probabilities"]
    np.testing.assert_allclose(probabilities, reference.run("tiny_uni", x)["probs"], atol=TOL)


async def test_a_start_may_bring_the_state_to_begin_from(
    client: httpx.AsyncClient, reference: Reference
) -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((12, FEATURES)).astype(np.float32)
    h1 = rng.standard_normal((1, 12)).astype(np.float32)
    body = chunk_body(x[:5], 99, start=True, end=False)
    body["inputs"].append({"name": "initial_h_1", "shape": [1, 1, 12], "datatype": "FP32",
                           "data": h1.ravel().tolist()})  # fmt: skip
    outputs_of(await client.post("/v2/models/tiny_uni/infer", json=body))
    last = outputs_of(await client.post("/v2/models/tiny_uni/infer",
                                        json=chunk_body(x[5:], 99, False, True)))  # fmt: skip
    whole = reference.run("tiny_uni", x, initial_h_1=h1)
    np.testing.assert_allclose(last["final_h_1"][:, 0], whole["final_h_1"], atol=TOL)


@pytest.mark.parametrize(
    ("model", "change", "status", "names"),
    [
        ("tiny_bi", {}, 422, "bidirectional"),
        ("tiny_uni", {"sequence_start": False}, 404, "never started"),
        ("tiny_uni", {"sequence_id": 1.5}, 422, "unsigned integer or a string"),
        ("tiny_uni", {"sequence_id": -3}, 422, "uint64"),
        ("tiny_uni", {"sequence_id": 0}, 422, "need a sequence_id"),
        ("tiny_uni", {"sequence_end": "yes"}, 422, "boolean"),
        ("tiny_uni", {"batch": 2}, 422, "one sequence"),
        ("tiny_uni", {"state_later": True}, 422, "only with sequence_start"),
    ],
)
async def test_a_chunk_that_cannot_run_is_a_4xx_naming_why(
    client: httpx.AsyncClient, model: str, change: dict[str, Any], status: int, names: str
) -> None:
    chunk = np.zeros((3, FEATURES), np.float32)
    body = chunk_body(chunk, 5, start=True, end=False)
    body["outputs"] = [{"name": "probs"}]
    if change.pop("batch", None):
        body["inputs"][0] = {"name": "inputs", "shape": [2, 3, FEATURES], "datatype": "FP32",
                             "data": [0.0] * (2 * 3 * FEATURES)}  # fmt: skip
    if change.pop("state_later", None):
        body["parameters"]["sequence_start"] = False
        body["inputs"].append({"name": "initial_h_0", "shape": [1, 1, 8], "datatype": "FP32",
                               "data": [0.0] * 8})  # fmt: skip
    body["parameters"].update(change)
    answer = await client.post(f"/v2/models/{model}/infer", json=body)
    assert answer.status_code == status, answer.text
    assert names in answer.json()["error"]


async def test_the_server_says_it_speaks_the_sequence_extension(client: httpx.AsyncClient) -> None:
    assert "sequence" in (await client.get("/v2")).json()["extensions"]


async def test_streams_are_refused_where_every_worker_has_its_own_batcher(
    model_repository: Path,
) -> None:
    settings = tiny_settings(model_repository, workers=2, engine="in-process")
    async with app_client(settings) as http:
        body = chunk_body(np.zeros((2, FEATURES), np.float32), 1, start=True, end=False)
        answer = await http.post("/v2/models/tiny_uni/infer", json=body)
    assert answer.status_code == 422
    assert "--engine separate" in answer.json()["error"]
