"""The HTTP API through the ASGI app with its lifespan: results, both protocols, errors,
overload, deadlines, readiness and metrics."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest

from service.batching import batcher as batcher_module
from tests.service.conftest import (
    FEATURES,
    LABELS,
    Reference,
    app_client,
    gated_factory,
    small_settings,
)

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


def _v2(shape: list[int], data: list, datatype: str = "FP32", **extra: object) -> dict:
    return {
        "inputs": [{"name": "inputs", "shape": shape, "datatype": datatype, "data": data}],
        **extra,
    }


def _binary(declared: int, sent: int) -> tuple[bytes, str]:
    """A binary V2 body for one [1, 1, 5] FP32 input: ``declared`` bytes said, ``sent`` sent."""
    header = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "inputs",
                    "shape": [1, 1, FEATURES],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": declared},
                }
            ]
        }
    )
    return header + b"\0" * sent, str(len(header))


GOOD_STEP = [0.1] * FEATURES
BAD_REQUESTS = [
    # (url, body bytes or JSON, headers, status, words the error must contain)
    ("/v1/models/tiny_bi/predict", {"sequences": [[[1.0, 2.0]]]}, None, 422, "5 features"),
    ("/v1/models/tiny_bi/predict", {"sequences": []}, None, 422, "no sequences"),
    ("/v1/models/tiny_bi/predict", {"sequences": [[]]}, None, 422, "empty"),
    ("/v1/models/tiny_bi/predict", {"sequences": [[GOOD_STEP, [1.0]]]}, None, 422, "ragged"),
    ("/v1/models/tiny_bi/predict", {"sequences": [[["x"] * 5]]}, None, 422, "non-numeric"),
    ("/v1/models/tiny_bi/predict", {"sequences": [[[True] * 5]]}, None, 422, "booleans"),
    ("/v1/models/tiny_bi/predict", {"sequences": [[[1e39] * 5]]}, None, 422, "infinite"),
    ("/v1/models/tiny_bi/predict", {"sequences": [[GOOD_STEP] * 301]}, None, 422, "limit is 300"),
    ("/v1/models/tiny_bi/predict", {"sequences": [[GOOD_STEP]] * 257}, None, 422, "limit is 256"),
    ("/v1/models/tiny_bi/predict", {"sequence": []}, None, 422, "sequences"),
    ("/v1/models/tiny_bi/predict", {"sequences": [[GOOD_STEP]], "bogus": 1}, None, 422, "bogus"),
    (
        "/v1/models/tiny_bi/predict",
        {"sequences": [[GOOD_STEP]], "return": ["x"]},
        None,
        422,
        "return",
    ),
    ("/v1/models/tiny_bi/predict", b'{"sequences": [[[1,2', None, 400, "not valid JSON"),
    ("/v1/models/tiny_bi/predict", b"[" * 5000 + b"]" * 5000, None, 400, "not valid JSON"),
    ("/v1/models/nope/predict", {"sequences": [[GOOD_STEP]]}, None, 404, "nope"),
    ("/v1/models/tiny_bi/versions/9/predict", {"sequences": [[GOOD_STEP]]}, None, 404, "version"),
    (
        "/v1/models/tiny_uni/predict",
        {"sequences": [[GOOD_STEP]], "initial_states": [[{"c": [[0.0]], "h": [[0.0]]}] * 2]},
        None,
        422,
        "shape",
    ),
    ("/v2/models/tiny_bi/infer", _v2([1, 2, 5], [0.0] * 9), None, 422, "needs 10"),
    ("/v2/models/tiny_bi/infer", _v2([1, 2, 4], [0.0] * 8), None, 422, "[B, T, 5]"),
    ("/v2/models/tiny_bi/infer", _v2([1, 1, 5], ["a"] * 5, "BYTES"), None, 422, "datatype"),
    ("/v2/models/tiny_bi/infer", _v2([1, 1, 5], [1] * 5, "INT32"), None, 422, "FP32"),
    ("/v2/models/tiny_bi/infer", _v2([1, 0, 5], []), None, 422, "zero-length"),
    ("/v2/models/tiny_bi/infer", {"inputs": []}, None, 422, "inputs"),
    (
        "/v2/models/tiny_bi/infer",
        {
            "inputs": [
                {"name": "inputs", "shape": [2, 2, 5], "datatype": "FP32", "data": [0.0] * 20},
                {"name": "lengths", "shape": [2], "datatype": "INT32", "data": [0, 2]},
            ]
        },
        None,
        422,
        "zero-length",
    ),
    (
        "/v2/models/tiny_bi/infer",
        {
            "inputs": [
                {"name": "inputs", "shape": [1, 2, 5], "datatype": "FP32", "data": [0.0] * 10},
                {"name": "lengths", "shape": [1], "datatype": "INT32", "data": [3]},
            ]
        },
        None,
        422,
        "[1, 2]",
    ),
    (
        "/v2/models/tiny_bi/infer",
        _v2([1, 1, 5], [0.0] * 5, outputs=[{"name": "zz"}]),
        None,
        422,
        "zz",
    ),
    (
        "/v2/models/tiny_bi/infer",
        {"inputs": [{"name": "extra", "shape": [1], "datatype": "FP32", "data": [0.0]}]},
        None,
        422,
        "unknown inputs",
    ),
    ("/v2/models/tiny_bi/infer", *_binary(declared=20, sent=8), 400, "binary data ends"),
    ("/v2/models/tiny_bi/infer", *_binary(declared=16, sent=16), 400, "does not match"),
    ("/v2/models/tiny_bi/infer", *_binary(declared=20, sent=24), 400, "belong to no input"),
    ("/v2/models/tiny_bi/infer", b"{}", "999", 400, "Inference-Header-Content-Length"),
]


@pytest.mark.parametrize(("url", "body", "header_length", "status", "words"), BAD_REQUESTS)
async def test_bad_input_gets_a_clear_4xx(
    client: httpx.AsyncClient,
    url: str,
    body: object,
    header_length: str | None,
    status: int,
    words: str,
) -> None:
    headers = {"Inference-Header-Content-Length": header_length} if header_length else {}
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    response = await client.post(url, content=content, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()
    assert words in error["error"], error
    assert error["error_type"]


async def test_body_over_the_limit_is_413(model_repository: Path) -> None:
    async with app_client(small_settings(model_repository, max_body_bytes=2048)) as http:
        body = {"sequences": [[[0.0] * FEATURES] * 100]}
        response = await http.post("/v1/models/tiny_bi/predict", json=body)
        assert response.status_code == 413
        assert "2048" in response.json()["error"]


async def test_full_queue_answers_429_and_accepted_requests_complete(
    model_repository: Path,
) -> None:
    gate, made = threading.Event(), []
    settings = small_settings(
        model_repository, max_queue_sequences=2, concurrent_batches=1, warmup=False
    )
    async with app_client(settings, gated_factory(gate, made)) as http:
        runtime = next(r for r in made if r.spec.name == "tiny_bi")
        url = "/v1/models/tiny_bi/predict"
        running = asyncio.ensure_future(http.post(url, json={"sequences": [[GOOD_STEP]]}))
        assert await asyncio.to_thread(runtime.started.acquire, True, 10)  # holds the slot
        queued = asyncio.ensure_future(http.post(url, json={"sequences": [[GOOD_STEP]] * 2}))
        for _ in range(10_000):  # yield to the loop until the queued request is in the batcher
            await asyncio.sleep(0)
            if 'lstm_queue_depth{model="tiny_bi"} 2.0' in (await http.get("/metrics")).text:
                break
        else:
            pytest.fail("the second request never reached the queue")
        rejected = await http.post(url, json={"sequences": [[GOOD_STEP]]})
        assert rejected.status_code == 429
        assert rejected.headers["Retry-After"] == "1"
        gate.set()
        assert (await running).status_code == 200
        assert len((await queued).json()["results"]) == 2


async def test_deadline_gives_504_and_the_batcher_recovers(model_repository: Path) -> None:
    gate, made = threading.Event(), []
    settings = small_settings(
        model_repository, request_timeout_s=0.3, concurrent_batches=1, warmup=False
    )
    async with app_client(settings, gated_factory(gate, made)) as http:
        url = "/v1/models/tiny_bi/predict"
        late = await http.post(url, json={"sequences": [[GOOD_STEP]]})
        assert late.status_code == 504
        assert "deadline" in late.json()["error"]
        gate.set()
        again = await http.post(url, json={"sequences": [[GOOD_STEP]]})
        assert again.status_code == 200


async def test_metrics_report_batches_padding_and_provider(client: httpx.AsyncClient) -> None:
    body = {"sequences": [[GOOD_STEP] * n for n in (3, 5)]}
    assert (await client.post("/v1/models/tiny_bi/predict", json=body)).status_code == 200
    await client.post("/v1/models/tiny_bi/predict", json={"sequences": []})
    text = (await client.get("/metrics")).text
    assert 'lstm_requests_total{model="tiny_bi",protocol="v1",status="200"} 1.0' in text
    assert 'lstm_requests_total{model="tiny_bi",protocol="v1",status="422"} 1.0' in text
    assert 'lstm_sequences_total{model="tiny_bi"} 2.0' in text
    assert 'lstm_batch_real_steps_total{model="tiny_bi"} 8.0' in text
    assert 'lstm_batch_size_count{model="tiny_bi"}' in text
    assert "lstm_batch_padding_efficiency_bucket" in text
    assert (
        'lstm_model_info{model="tiny_bi",provider="CPUExecutionProvider",version="1"} 1.0' in text
    )


async def test_a_corrupt_model_is_down_alone(model_repository: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    (repo / "tiny_bi" / "1").mkdir(parents=True)
    (repo / "tiny_bi" / "1" / "model.onnx").write_bytes(
        (model_repository / "tiny_bi" / "1" / "model.onnx").read_bytes()
    )
    async with app_client(small_settings(repo)) as http:
        ready = await http.get("/v2/health/ready")
        assert ready.status_code == 503
        assert list(ready.json()["models_down"]) == ["broken/1"]
        assert (await http.get("/v2/models/broken/ready")).status_code == 503
        down = await http.post("/v1/models/broken/predict", json={"sequences": [[GOOD_STEP]]})
        assert down.status_code == 503
        ok = await http.post("/v1/models/tiny_bi/predict", json={"sequences": [[GOOD_STEP]]})
        assert ok.status_code == 200


async def test_a_crashed_batcher_flips_readiness(client: httpx.AsyncClient, monkeypatch) -> None:
    def broken(*_args, **_kwargs):
        raise RuntimeError("formation bug")

    monkeypatch.setattr(batcher_module, "select_batch", broken)
    response = await client.post("/v1/models/tiny_bi/predict", json={"sequences": [[GOOD_STEP]]})
    assert response.status_code == 503
    ready = await client.get("/v2/health/ready")
    assert ready.status_code == 503
    assert "tiny_bi/1" in ready.json()["models_down"]
    live = await client.get("/v2/health/live")  # so that an orchestrator restarts the process
    assert live.status_code == 503
    assert live.json()["batchers_dead"] == ["tiny_bi/1"]
    metrics = (await client.get("/metrics")).text
    assert 'lstm_model_ready{model="tiny_bi",version="1"} 0.0' in metrics
    assert 'lstm_model_ready{model="tiny_uni",version="1"} 1.0' in metrics


async def test_refuses_to_start_when_no_model_can_serve(tmp_path: Path) -> None:
    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(RuntimeError, match="no model can serve .*broken/1"):
        async with app_client(small_settings(tmp_path)):
            pass


class PoisonedRuntime:
    """A real runtime that raises for any batch holding a sequence starting with 999."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.spec, self.provider, self.on_gpu = inner, inner.spec, inner.provider, False

    def warmup(self, batch_sizes: list[int], lengths: list[int]) -> float:
        return 0.0

    def run_batch(self, sequences, initial_states, output_names):  # type: ignore[no-untyped-def]
        if any(s[0, 0] == 999 for s in sequences):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.inner.run_batch(sequences, initial_states, output_names)


async def test_a_runtime_failure_fails_that_batch_only_and_stays_ready(
    model_repository: Path,
) -> None:
    from service.registry import onnx_runtime_factory

    def factory(path, name, version, settings):  # type: ignore[no-untyped-def]
        return PoisonedRuntime(onnx_runtime_factory(path, name, version, settings))

    async with app_client(small_settings(model_repository), factory) as http:
        url = "/v1/models/tiny_bi/predict"
        failed = await http.post(url, json={"sequences": [[[999.0] * FEATURES]]})
        assert failed.status_code == 500
        assert failed.json() == {
            "error": "inference failed for this batch",
            "error_type": "inference_failed",
        }  # the runtime's own message stays in the log
        assert (await http.post(url, json={"sequences": [[GOOD_STEP]]})).status_code == 200
        assert (await http.get("/v2/health/ready")).status_code == 200
        metrics = (await http.get("/metrics")).text
        assert 'lstm_batches_total{model="tiny_bi",outcome="failed"} 1.0' in metrics


async def test_a_hung_runtime_takes_the_model_down_so_it_gets_restarted(
    model_repository: Path,
) -> None:
    gate, made = threading.Event(), []
    settings = small_settings(
        model_repository, max_batch_run_s=0.3, concurrent_batches=2, warmup=False
    )
    try:
        async with app_client(settings, gated_factory(gate, made)) as http:
            url = "/v1/models/tiny_bi/predict"
            hung = await http.post(url, json={"sequences": [[GOOD_STEP]]})  # never returns
            assert hung.status_code == 500
            assert hung.json()["error"] == "inference did not finish"
            assert (await http.post(url, json={"sequences": [[GOOD_STEP]]})).status_code == 503
            live = await http.get("/v2/health/live")
            assert live.status_code == 503 and live.json()["batchers_dead"] == ["tiny_bi/1"]
            ready = await http.get("/v2/health/ready")
            assert ready.status_code == 503 and "tiny_bi/1" in ready.json()["models_down"]
            gate.set()
    finally:
        gate.set()  # let the stuck worker threads finish
