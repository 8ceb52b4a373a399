"""The Open Inference Protocol (KServe V2) routes (``service.frontend.api.v2``) through the ASGI app
with its lifespan: health and server metadata, model metadata and readiness, and infer in JSON
(a padded batch) and with binary tensors, each sequence's results those of it run alone."""

from __future__ import annotations

import httpx
import numpy as np
import orjson
import pytest

from tests.support.ort_reference import Reference
from tests.support.tiny_repository import FEATURES

pytestmark = pytest.mark.anyio
TOL = 1e-5


def random_sequences(rng: np.random.Generator, lengths: list[int]) -> list[np.ndarray]:
    return [rng.standard_normal((n, FEATURES)).astype(np.float32) for n in lengths]


async def test_health_and_server_metadata(client: httpx.AsyncClient) -> None:
    assert (await client.get("/v2/health/live")).json() == {"live": True}
    assert (await client.get("/v2/health/ready")).status_code == 200
    server = (await client.get("/v2")).json()
    assert server["name"] == "lstm-serving" and "binary_tensor_data" in server["extensions"]
    listing = (await client.get("/v1/models")).json()["models"]
    assert {(m["name"], m["ready"], m["provider"]) for m in listing} == {
        ("tiny_bi", True, "CPUExecutionProvider"),
        ("tiny_uni", True, "CPUExecutionProvider"),
    }


async def test_v2_json_padded_batch_with_garbage_padding(
    client: httpx.AsyncClient, reference: Reference
) -> None:
    lengths = [4, 9, 1]
    sequences = random_sequences(np.random.default_rng(3), lengths)
    batch = np.full((3, 9, FEATURES), 1e3, dtype=np.float32)  # garbage in the padding
    for b, s in enumerate(sequences):
        batch[b, : len(s)] = s
    body = {
        "id": "req-1",
        "inputs": [
            {
                "name": "inputs",
                "shape": [3, 9, FEATURES],
                "datatype": "FP32",
                "data": batch.ravel().tolist(),
            },
            {"name": "lengths", "shape": [3], "datatype": "INT32", "data": lengths},
        ],
    }
    response = await client.post("/v2/models/tiny_bi/versions/1/infer", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["id"] == "req-1" and payload["model_version"] == "1"
    outputs = {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in payload["outputs"]}
    assert outputs["outputs"].shape == (3, 9, 16)
    for b, s in enumerate(sequences):
        expected = reference.run("tiny_bi", s)
        np.testing.assert_allclose(outputs["probs"][b], expected["probs"], atol=TOL)
        np.testing.assert_allclose(outputs["outputs"][b, : len(s)], expected["outputs"], atol=TOL)
        assert not outputs["outputs"][b, len(s) :].any()  # exactly zero past the length
        np.testing.assert_allclose(outputs["final_h_1"][:, b], expected["final_h_1"], atol=TOL)


async def test_v2_single_sequence_and_binary_tensors(
    client: httpx.AsyncClient, reference: Reference
) -> None:
    sequence = random_sequences(np.random.default_rng(4), [11])[0]
    blob = sequence.astype("<f4").tobytes()
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "inputs",
                    "shape": [11, FEATURES],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(blob)},
                }
            ],
            "outputs": [{"name": "probs", "parameters": {"binary_data": True}}, {"name": "logits"}],
        }
    )
    response = await client.post(
        "/v2/models/tiny_uni/infer",
        content=header + blob,
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert response.status_code == 200, response.text
    split = int(response.headers["Inference-Header-Content-Length"])
    meta = orjson.loads(response.content[:split])
    probs_meta, logits_meta = meta["outputs"]
    size = probs_meta["parameters"]["binary_data_size"]
    probs = np.frombuffer(response.content[split : split + size], "<f4").reshape(
        probs_meta["shape"]
    )
    expected = reference.run("tiny_uni", sequence)
    np.testing.assert_allclose(probs[0], expected["probs"], atol=TOL)
    np.testing.assert_allclose(logits_meta["data"], expected["logits"], atol=TOL)


async def test_v2_model_metadata_and_readiness(client: httpx.AsyncClient) -> None:
    meta = (await client.get("/v2/models/tiny_bi")).json()
    assert meta["versions"] == ["1"] and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [
        {"name": "inputs", "datatype": "FP32", "shape": [-1, -1, FEATURES]},
        {"name": "lengths", "datatype": "INT32", "shape": [-1]},
    ]
    assert {o["name"] for o in meta["outputs"]} >= {"logits", "probs", "outputs", "final_h_1"}
    assert (await client.get("/v2/models/tiny_bi/versions/1/ready")).status_code == 200
    assert (await client.get("/v2/models/nope/ready")).status_code == 404
    assert (await client.get("/v2/models/tiny_bi/versions/7")).status_code == 404
