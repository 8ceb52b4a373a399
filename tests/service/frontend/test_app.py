"""The app that ``create_app`` builds (``service.frontend.app``), through its ASGI interface with
its lifespan: start-up over a repository with broken models, the body limit (413), overload (429),
deadlines (504), and faults contained: a runtime that fails, hangs, or a batcher that crashes."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import httpx
import pytest

from service.engine.batching import batcher as batcher_module
from service.engine.loading import onnx_runtime_factory
from tests.support.servers import metric
from tests.support.service_app import GatedRuntime, app_client, gated_factory, until
from tests.support.tiny_repository import FEATURES, tiny_settings

pytestmark = pytest.mark.anyio
GOOD_STEP = [0.1] * FEATURES


async def test_body_over_the_limit_is_413(model_repository: Path) -> None:
    async with app_client(tiny_settings(model_repository, max_body_bytes=2048)) as http:
        body = {"sequences": [[[0.0] * FEATURES] * 100]}
        response = await http.post("/v1/models/tiny_bi/predict", json=body)
        assert response.status_code == 413
        assert "2048" in response.json()["error"]


async def test_full_queue_answers_429_and_accepted_requests_complete(
    model_repository: Path,
) -> None:
    gate, made = threading.Event(), list[GatedRuntime]()
    settings = tiny_settings(
        model_repository, max_queue_sequences=2, concurrent_batches=1, warmup=False
    )
    async with app_client(settings, gated_factory(gate, made)) as http:
        runtime = next(r for r in made if r.spec.name == "tiny_bi")
        url = "/v1/models/tiny_bi/predict"
        running = asyncio.ensure_future(http.post(url, json={"sequences": [[GOOD_STEP]]}))
        assert await asyncio.to_thread(runtime.started.acquire, True, 10)  # holds the slot
        queued = asyncio.ensure_future(http.post(url, json={"sequences": [[GOOD_STEP]] * 2}))

        async def queued_two() -> bool:
            depth = 'lstm_queue_depth{model="tiny_bi"}'
            return metric((await http.get("/metrics")).text, depth, default=0) == 2

        await until(queued_two, "the second request's queueing")
        rejected = await http.post(url, json={"sequences": [[GOOD_STEP]]})
        assert rejected.status_code == 429
        assert rejected.headers["Retry-After"] == "1"
        gate.set()
        assert (await running).status_code == 200
        assert len((await queued).json()["results"]) == 2


async def test_deadline_gives_504_and_the_batcher_recovers(model_repository: Path) -> None:
    gate, made = threading.Event(), list[GatedRuntime]()
    settings = tiny_settings(
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


async def test_a_corrupt_model_is_down_alone(model_repository: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "1" / "model.onnx").write_bytes(b"not an onnx file")
    (repo / "tiny_bi" / "1").mkdir(parents=True)
    (repo / "tiny_bi" / "1" / "model.onnx").write_bytes(
        (model_repository / "tiny_bi" / "1" / "model.onnx").read_bytes()
    )
    async with app_client(tiny_settings(repo)) as http:
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
        async with app_client(tiny_settings(tmp_path)):
            pass


class PoisonedRuntime:
    """A real runtime that raises for any batch holding a sequence starting with 999."""

    def __init__(self, inner) -> None:  # type: ignore[no-untyped-def]
        self.inner, self.spec, self.on_gpu = inner, inner.spec, False
        self.provider, self.device = inner.provider, inner.device

    def warmup(self, batch_sizes: list[int], lengths: list[int]) -> float:
        return 0.0

    def run_batch(self, sequences, initial_states, output_names):  # type: ignore[no-untyped-def]
        if any(s[0, 0] == 999 for s in sequences):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.inner.run_batch(sequences, initial_states, output_names)


async def test_a_runtime_failure_fails_that_batch_only_and_stays_ready(
    model_repository: Path,
) -> None:
    def factory(path, name, version, settings):  # type: ignore[no-untyped-def]
        return PoisonedRuntime(onnx_runtime_factory(path, name, version, settings))

    async with app_client(tiny_settings(model_repository), factory) as http:
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
        assert metric(metrics, 'lstm_batches_total{model="tiny_bi",outcome="failed"}') == 1


async def test_a_hung_runtime_takes_the_model_down_so_it_gets_restarted(
    model_repository: Path,
) -> None:
    gate, made = threading.Event(), list[GatedRuntime]()
    settings = tiny_settings(
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
