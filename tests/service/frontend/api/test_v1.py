"""The simple JSON API (``service.frontend.api.v1``) through the ASGI app with its lifespan: predict
equals each sequence run alone, its default fields, chunked runs through initial states, and
``/v1/models`` giving the model's metadata as JSON values: the ``metadata_props`` that hold JSON
objects or lists (``parity``, ``layer_sizes``, ``labels``) are objects and lists in the
response, not JSON text inside strings."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from export.metadata import read_metadata
from tests.support.ort_reference import Reference
from tests.support.tiny_repository import FEATURES, LABELS

pytestmark = pytest.mark.anyio
TOL = 1e-5


def random_sequences(rng: np.random.Generator, lengths: list[int]) -> list[np.ndarray]:
    return [rng.standard_normal((n, FEATURES)).astype(np.float32) for n in lengths]


async def test_v1_predict_equals_each_sequence_run_alone(
    client: httpx.AsyncClient, reference: Reference
) -> None:
    sequences = random_sequences(np.random.default_rng(1), [7, 1, 30, 12])
    body = {
        "sequences": [s.tolist() for s in sequences],
        "return": ["label", "probabilities", "logits", "outputs", "final_state"],
    }
    response = await client.post("/v1/models/tiny_bi/predict", json=body)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["labels"] == list(LABELS)
    for sequence, result in zip(sequences, payload["results"], strict=True):
        expected = reference.run("tiny_bi", sequence)
        np.testing.assert_allclose(result["probabilities"], expected["probs"], atol=TOL)
        np.testing.assert_allclose(result["logits"], expected["logits"], atol=TOL)
        np.testing.assert_allclose(result["outputs"], expected["outputs"], atol=TOL)
        assert len(result["outputs"]) == len(sequence)
        assert result["label"] == LABELS[int(np.argmax(expected["probs"]))]
        for n, layer in enumerate(result["final_state"]):
            np.testing.assert_allclose(layer["c"], expected[f"final_c_{n}"], atol=TOL)
            np.testing.assert_allclose(layer["h"], expected[f"final_h_{n}"], atol=TOL)


async def test_v1_default_return_is_label_and_probabilities(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/models/tiny_uni/predict", json={"sequences": [[[0.5] * 5]]})
    (result,) = response.json()["results"]
    assert set(result) == {"label", "class_index", "probabilities"}
    assert sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-5)


async def test_v1_chunked_run_with_initial_states_equals_whole_run(
    client: httpx.AsyncClient, reference: Reference
) -> None:
    sequence = random_sequences(np.random.default_rng(2), [25])[0]
    url = "/v1/models/tiny_uni/predict"
    first = await client.post(
        url, json={"sequences": [sequence[:10].tolist()], "return": ["final_state"]}
    )
    state = first.json()["results"][0]["final_state"]
    second = await client.post(
        url,
        json={
            "sequences": [sequence[10:].tolist()],
            "initial_states": [state],
            "return": ["probabilities", "final_state"],
        },
    )
    assert second.status_code == 200, second.text
    result = second.json()["results"][0]
    whole = reference.run("tiny_uni", sequence)
    np.testing.assert_allclose(result["probabilities"], whole["probs"], atol=TOL)
    np.testing.assert_allclose(result["final_state"][-1]["h"], whole["final_h_1"], atol=TOL)


async def test_v1_models_returns_json_metadata_as_objects(
    client: httpx.AsyncClient, model_repository: Path
) -> None:
    stored = read_metadata(model_repository / "tiny_bi" / "1" / "model.onnx")
    listing = (await client.get("/v1/models")).json()["models"]
    (listed,) = [m["metadata"] for m in listing if m["name"] == "tiny_bi"]
    single = (await client.get("/v1/models/tiny_bi")).json()["metadata"]
    for metadata in (listed, single):
        assert isinstance(metadata["parity"], dict)
        assert metadata["parity"] == json.loads(stored["parity"])
        assert metadata["layer_sizes"] == [8, 8]
        assert metadata["labels"] == list(LABELS)
        # scalars stay the strings stored: a version is a name, "true" is the contract's text
        assert metadata["version"] == "1" and metadata["bidirectional"] == "true"
        assert metadata["source_checkpoint_sha256"] == stored["source_checkpoint_sha256"]
        assert set(metadata) == set(stored)
