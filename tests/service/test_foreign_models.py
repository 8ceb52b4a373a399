"""Serving models this project did not export (``tests.support.foreign_models``), end to end
through the app: each answer, V2 and v1, compared with the model run alone in torch or
in-process ONNX Runtime.

* ``plain``: ``torch.onnx.export`` of ``nn.LSTM`` + ``nn.Linear``, no lengths input, so
  padding-sensitive: served in exact-length batches.
* ``plain_tm``: the same, time-major, with a ``config.pbtxt`` that says so and names the
  logits and their labels.
* ``renamed``: a contract graph with other names, no probabilities and int64 lengths; roles
  inferred. ``renamed_cfg``: the same with a ``config.pbtxt`` naming its logits.

Shapes: ``B`` batch, ``T`` time, ``F`` = 5 features, ``H`` = 8, ``C`` = 3 classes.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.support.engine import frontend_of, running_engine
from tests.support.foreign_models import (
    PLAIN_FEATURES,
    export_plain_lstm,
    plain_lstm,
    renamed_contract_model,
    run_plain,
)
from tests.support.ort_reference import Reference
from tests.support.service_app import GatedRuntime, app_client, gated_factory, until
from tests.support.tiny_repository import FEATURES, LABELS, tiny_settings

pytestmark = pytest.mark.anyio
TOL = 1e-5

TIME_MAJOR_CONFIG = """
name: "plain_tm"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ -1, 5 ] } ]
output [ { name: "scores" data_type: TYPE_FP32 dims: [ 3 ] label_filename: "labels.txt" } ]
parameters { key: "sequence_layout" value: { string_value: "time_major" } }
parameters { key: "logits_output" value: { string_value: "scores" } }
"""
RENAMED_CONFIG = """
name: "renamed_cfg"
max_batch_size: 16
input [
  { name: "x" data_type: TYPE_FP32 dims: [ -1, 5 ] },
  { name: "lens" data_type: TYPE_INT64 dims: [ 1 ] reshape: { shape: [ ] } }
]
output [ { name: "scores" data_type: TYPE_FP32 dims: [ 3 ] label_filename: "labels.txt" } ]
parameters: { key: "logits_output" value: { string_value: "scores" } }
"""
TM_LABELS = ("low", "mid", "high")


@pytest.fixture(scope="module")
def foreign_repository(tmp_path_factory: pytest.TempPathFactory, model_repository: Path) -> Path:
    repo = tmp_path_factory.mktemp("foreign")
    export_plain_lstm(plain_lstm(batch_first=True), repo, "plain")
    export_plain_lstm(plain_lstm(batch_first=False), repo, "plain_tm", TIME_MAJOR_CONFIG)
    (repo / "plain_tm" / "labels.txt").write_text("\n".join(TM_LABELS) + "\n")
    source = model_repository / "tiny_uni" / "1" / "model.onnx"
    renamed_contract_model(source, repo, "renamed")
    renamed_contract_model(source, repo, "renamed_cfg", RENAMED_CONFIG)
    (repo / "renamed_cfg" / "labels.txt").write_text("\n".join(LABELS) + "\n")
    return repo


@pytest.fixture
async def client(foreign_repository: Path) -> Any:
    async with app_client(tiny_settings(foreign_repository)) as http:
        yield http


def sequences(lengths: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((n, PLAIN_FEATURES)).astype(np.float32) for n in lengths]


def v2_outputs(response: httpx.Response) -> dict[str, np.ndarray]:
    assert response.status_code == 200, response.text
    return {
        o["name"]: np.array(o["data"], dtype=np.float32).reshape(o["shape"])
        for o in response.json()["outputs"]
    }


def tensor(name: str, array: np.ndarray, datatype: str = "FP32") -> dict[str, Any]:
    return {
        "name": name,
        "datatype": datatype,
        "shape": list(array.shape),
        "data": array.ravel().tolist(),
    }


# -- what is inferred, and said --------------------------------------------------------------
async def test_metadata_says_what_was_inferred(client: httpx.AsyncClient) -> None:
    plain = (await client.get("/v2/models/plain")).json()
    assert plain["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, -1, 5]}]
    assert [(o["name"], o["datatype"], o["shape"]) for o in plain["outputs"]] == [
        ("scores", "FP32", [-1, 3]), ("y", "FP32", [-1, -1, 8]), ("h_n", "FP32", [2, -1, 8]),
        ("best", "INT64", [-1]),
    ]  # fmt: skip
    assert plain["parameters"]["batching"] == "exact_length"
    assert plain["parameters"]["lengths_input"] is None
    assert plain["parameters"]["labels"] == []  # no output named or configured as a class
    renamed = (await client.get("/v2/models/renamed")).json()
    assert renamed["inputs"] == [
        {"name": "x", "datatype": "FP32", "shape": [-1, -1, 5]},
        {"name": "lens", "datatype": "INT64", "shape": [-1]},
    ]
    assert renamed["parameters"]["batching"] == "padded"
    assert renamed["parameters"]["optional_inputs"] == []  # init_* are not the contract's states
    configured = (await client.get("/v1/models/plain_tm")).json()
    assert configured["sequence_layout"] == "time_major"
    assert (configured["logits_output"], configured["labels"]) == ("scores", list(TM_LABELS))


# -- padding-sensitive: exact-length batches ---------------------------------------------------
async def test_a_padding_sensitive_model_answers_each_sequence_as_run_alone(
    client: httpx.AsyncClient,
) -> None:
    model = plain_lstm(batch_first=True)
    lengths = [3, 7, 3, 5, 7, 7, 1, 3, 12, 5]
    given = sequences(lengths)
    # Concurrent requests of mixed lengths, one sequence each (V2), and one v1 request of all.
    replies = await asyncio.gather(
        *(
            client.post("/v2/models/plain/infer", json={"inputs": [tensor("x", s[np.newaxis])]})
            for s in given
        )
    )
    v1 = await client.post(
        "/v1/models/plain/predict", json={"sequences": [s.tolist() for s in given]}
    )
    assert v1.status_code == 200, v1.text
    for sequence, reply, result in zip(given, replies, v1.json()["results"], strict=True):
        expected = run_plain(model, sequence)
        outputs = v2_outputs(reply)
        np.testing.assert_allclose(outputs["scores"][0], expected["scores"], atol=TOL)
        np.testing.assert_allclose(outputs["y"][0], expected["y"], atol=TOL)
        np.testing.assert_allclose(outputs["h_n"][:, 0], expected["h_n"], atol=TOL)
        assert set(result) == {"tensors"}  # no class output: every output by its name
        assert reply.json()["outputs"][3] == {
            "name": "best", "datatype": "INT64", "shape": [1], "data": [int(expected["best"])]
        }  # fmt: skip
        for name in ("scores", "y", "h_n", "best"):
            np.testing.assert_allclose(result["tensors"][name], expected[name], atol=TOL)


async def test_padding_sensitive_batches_hold_one_length(foreign_repository: Path) -> None:
    gate, made = threading.Event(), list[GatedRuntime]()
    settings = tiny_settings(foreign_repository, concurrent_batches=1, warmup=False)
    async with app_client(settings, gated_factory(gate, made)) as http:
        app = http._transport.app  # type: ignore[attr-defined]
        runtime = next(r for r in made if r.spec.name == "plain")
        batcher = app.state.context.registry.get("plain").batcher
        url = "/v1/models/plain/predict"
        given = sequences([4, 4, 6, 4, 6, 9, 4, 6], seed=1)
        first = asyncio.ensure_future(http.post(url, json={"sequences": [given[0].tolist()]}))
        assert await asyncio.to_thread(runtime.started.acquire, True, 10)  # held, running
        rest = asyncio.ensure_future(
            http.post(url, json={"sequences": [s.tolist() for s in given[1:]]})
        )
        await until(lambda: batcher.queue_depth == len(given) - 1, "the second request's queueing")
        gate.set()
        answers = [await first, await rest]
    assert [a.status_code for a in answers] == [200, 200]
    assert runtime.batches[0] == [4]
    # What waited together: each length in a batch of its own, the lengths never mixed.
    assert sorted(runtime.batches[1:]) == [[4, 4, 4], [6, 6, 6], [9]]


# -- time-major, configured ---------------------------------------------------------------------
async def test_a_time_major_model_takes_and_answers_its_own_layout(
    client: httpx.AsyncClient,
) -> None:
    model = plain_lstm(batch_first=False)
    given = sequences([6, 6, 6], seed=2)
    batch = np.stack(given, axis=1)  # [T, B, F], as the model's metadata says
    outputs = v2_outputs(
        await client.post("/v2/models/plain_tm/infer", json={"inputs": [tensor("x", batch)]})
    )
    assert outputs["y"].shape == (6, 3, 8)  # [T, B, H]
    predicted = await client.post(
        "/v1/models/plain_tm/predict", json={"sequences": [s.tolist() for s in given]}
    )
    assert predicted.status_code == 200, predicted.text
    for b, (sequence, result) in enumerate(zip(given, predicted.json()["results"], strict=True)):
        expected = run_plain(model, sequence)
        np.testing.assert_allclose(outputs["y"][:, b], expected["y"], atol=TOL)
        np.testing.assert_allclose(outputs["scores"][b], expected["scores"], atol=TOL)
        scores = expected["scores"].astype(np.float64)
        probabilities = np.exp(scores - scores.max()) / np.exp(scores - scores.max()).sum()
        assert result["label"] == TM_LABELS[int(np.argmax(scores))]
        np.testing.assert_allclose(result["probabilities"], probabilities, atol=TOL)


async def test_a_batch_major_shape_sent_to_a_time_major_model_is_cut_as_time_major(
    client: httpx.AsyncClient,
) -> None:
    # [T, B, F] = [2, 5, 5]: five sequences of two steps, not two of five.
    batch = np.ones((2, 5, PLAIN_FEATURES), np.float32)
    outputs = v2_outputs(
        await client.post("/v2/models/plain_tm/infer", json={"inputs": [tensor("x", batch)]})
    )
    assert outputs["y"].shape == (2, 5, 8) and outputs["scores"].shape == (5, 3)


# -- renamed inputs and outputs, no probabilities ----------------------------------------------
async def test_renamed_inputs_and_int64_lengths_are_served_by_their_names(
    client: httpx.AsyncClient, model_repository: Path
) -> None:
    reference = Reference(model_repository, ["tiny_uni"])
    lengths = [4, 9, 1]
    given = [s[:, :FEATURES] for s in sequences(lengths, seed=3)]
    batch = np.full((3, 9, FEATURES), 1e3, np.float32)  # garbage in the padding
    for b, s in enumerate(given):
        batch[b, : len(s)] = s
    lens = np.array(lengths, np.int64)
    body = {"inputs": [tensor("x", batch), tensor("lens", lens, "INT64")]}
    for name in ("renamed", "renamed_cfg"):
        outputs = v2_outputs(await client.post(f"/v2/models/{name}/infer", json=body))
        assert set(outputs) == {"scores", "per_step", "state_c_0", "state_h_0", "state_c_1",
                                "state_h_1"}  # fmt: skip
        for b, s in enumerate(given):
            expected = reference.run("tiny_uni", s)
            np.testing.assert_allclose(outputs["scores"][b], expected["logits"], atol=TOL)
            np.testing.assert_allclose(
                outputs["per_step"][b, : len(s)], expected["outputs"], atol=TOL
            )
            np.testing.assert_allclose(outputs["state_h_1"][:, b], expected["final_h_1"], atol=TOL)
    wrong = {"inputs": [tensor("x", batch), tensor("lens", lens.astype(np.int32), "INT32")]}
    refused = await client.post("/v2/models/renamed/infer", json=wrong)
    assert refused.status_code == 422 and "accepts only INT64" in refused.text
    old_names = {"inputs": [tensor("inputs", batch), tensor("lengths", lens, "INT32")]}
    refused = await client.post("/v2/models/renamed/infer", json=old_names)
    assert refused.status_code == 422 and "model renamed has 'x', 'lens'" in refused.text


async def test_v1_classifies_only_where_a_class_output_is_named(
    client: httpx.AsyncClient, model_repository: Path
) -> None:
    reference = Reference(model_repository, ["tiny_uni"])
    given = [s[:, :FEATURES] for s in sequences([5, 2], seed=4)]
    body = {"sequences": [s.tolist() for s in given]}
    inferred = await client.post("/v1/models/renamed/predict", json=body)
    assert inferred.status_code == 200, inferred.text
    assert all(set(r) == {"tensors"} for r in inferred.json()["results"])
    refused = await client.post("/v1/models/renamed/predict", json={**body, "return": ["label"]})
    assert refused.status_code == 422
    assert "cannot return 'label': it has no class output" in refused.text
    configured = await client.post(
        "/v1/models/renamed_cfg/predict",
        json={**body, "return": ["label", "probabilities", "logits"]},
    )
    assert configured.status_code == 200, configured.text
    for s, result in zip(given, configured.json()["results"], strict=True):
        expected = reference.run("tiny_uni", s)
        assert result["label"] == LABELS[int(np.argmax(expected["probs"]))]
        np.testing.assert_allclose(result["probabilities"], expected["probs"], atol=TOL)
        np.testing.assert_allclose(result["logits"], expected["logits"], atol=TOL)


# -- what cannot be served says what to do -------------------------------------------------------
async def test_a_model_of_a_newer_ir_version_fails_with_what_to_do(tmp_path: Path) -> None:
    export_plain_lstm(plain_lstm(), tmp_path, "newer", ir_version=14)
    export_plain_lstm(plain_lstm(), tmp_path, "fine")
    async with app_client(tiny_settings(tmp_path)) as http:
        ready = await http.get("/v2/health/ready")
        assert ready.status_code == 503
        error = ready.json()["models_down"]["newer/1"]
        assert "ONNX IR version 14" in error and "m.ir_version = 13" in error
        fine = await http.post(
            "/v2/models/fine/infer", json={"inputs": [tensor("x", np.ones((1, 3, 5), np.float32))]}
        )
        assert fine.status_code == 200


async def test_a_foreign_model_across_the_handoff_answers_as_in_process(
    foreign_repository: Path, tmp_path: Path
) -> None:
    # The spec an engine describes (roles, axes, datatypes) is what its frontends serve by.
    model = plain_lstm(batch_first=True)
    given = sequences([3, 8, 3], seed=5)
    settings = tiny_settings(foreign_repository)
    async with running_engine(settings, tmp_path) as engine, frontend_of(engine, settings) as http:
        metadata = (await http.get("/v2/models/plain")).json()
        assert metadata["parameters"]["batching"] == "exact_length"
        body = {"sequences": [s.tolist() for s in given]}
        answer = await http.post("/v1/models/plain/predict", json=body)
        assert answer.status_code == 200, answer.text
        for sequence, result in zip(given, answer.json()["results"], strict=True):
            expected = run_plain(model, sequence)
            assert result["tensors"]["best"] == int(expected["best"])
            np.testing.assert_allclose(result["tensors"]["y"], expected["y"], atol=TOL)
        one = await http.post(
            "/v2/models/plain/infer", json={"inputs": [tensor("x", given[1][np.newaxis])]}
        )
        outputs = v2_outputs(one)
        np.testing.assert_allclose(
            outputs["h_n"][:, 0], run_plain(model, given[1])["h_n"], atol=TOL
        )
