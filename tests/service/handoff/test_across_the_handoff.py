"""A frontend app (``create_app`` with ``engine_addresses``) in front of an engine served in the
same process over a real ZeroMQ IPC socket: answers equal in-process ORT, the engine's admission
(429), deadlines and cancellation reach the engine (a late request is dropped there before it
runs), and an engine that stops makes the frontend answer 503 with Retry-After."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
import zmq.asyncio

from service.engine.streaming import StreamingBatcher
from service.handoff.messages import Submit, encode
from tests.support.engine import frontend_of, running_engine
from tests.support.ort_reference import Reference
from tests.support.service_app import GatedRuntime, app_client, gated_factory
from tests.support.tiny_repository import FEATURES, tiny_settings
from tests.support.v2_bodies import v2_json

pytestmark = pytest.mark.anyio
STEP = [0.1] * FEATURES


async def test_answers_across_the_handoff_equal_in_process_ort(
    model_repository: Path, reference: Reference, tmp_path: Path
) -> None:
    settings = tiny_settings(model_repository)
    rng = np.random.default_rng(5)
    sequences = [rng.standard_normal((n, FEATURES)).astype(np.float32) for n in (3, 17, 9, 1)]
    state = rng.standard_normal((1, 12)).astype(np.float32)
    async with running_engine(settings, tmp_path) as engine:
        async with frontend_of(engine, settings) as http:
            body = {
                "sequences": [s.tolist() for s in sequences],
                "return": ["probabilities", "outputs"],
            }
            answer = await http.post("/v1/models/tiny_bi/predict", json=body)
            assert answer.status_code == 200, answer.text
            for sequence, result in zip(sequences, answer.json()["results"], strict=True):
                expected = reference.run("tiny_bi", sequence)
                np.testing.assert_allclose(result["probabilities"], expected["probs"], atol=1e-6)
                np.testing.assert_allclose(result["outputs"], expected["outputs"], atol=1e-6)
            # V2 with an initial state of the second layer, and the final states asked for.
            batch = np.zeros((1, 9, FEATURES), np.float32)
            batch[0] = sequences[2]
            v2 = v2_json(batch, [9], outputs=[{"name": "final_h_1"}, {"name": "logits"}])
            v2["inputs"].append(
                {"name": "initial_h_1", "shape": [1, 1, 12], "datatype": "FP32",
                 "data": state.ravel().tolist()}
            )  # fmt: skip
            answer = await http.post("/v2/models/tiny_uni/infer", json=v2)
            assert answer.status_code == 200, answer.text
            outputs = {o["name"]: np.array(o["data"]) for o in answer.json()["outputs"]}
            expected = reference.run("tiny_uni", sequences[2], initial_h_1=state)
            np.testing.assert_allclose(
                outputs["final_h_1"], expected["final_h_1"].ravel(), atol=1e-6
            )
            np.testing.assert_allclose(outputs["logits"], expected["logits"], atol=1e-6)
            # The metadata the frontend serves is the engine's description.
            metadata = (await http.get("/v2/models/tiny_uni")).json()
            assert {i["name"] for i in metadata["inputs"]} >= {"inputs", "lengths"}
            assert (await http.get("/v2/health/ready")).json() == {"ready": True}


async def test_the_engines_admission_answers_429_and_accepted_requests_complete(
    model_repository: Path, tmp_path: Path
) -> None:
    gate, made = threading.Event(), list[GatedRuntime]()
    settings = tiny_settings(
        model_repository, max_queue_sequences=2, concurrent_batches=1, warmup=False
    )
    async with running_engine(settings, tmp_path, gated_factory(gate, made)) as engine:
        runtime = next(r for r in made if r.spec.name == "tiny_bi")
        async with frontend_of(engine, settings) as http:
            url = "/v1/models/tiny_bi/predict"
            running = asyncio.ensure_future(http.post(url, json={"sequences": [[STEP]]}))
            assert await asyncio.to_thread(runtime.started.acquire, True, 10)  # holds the slot
            queued = asyncio.ensure_future(http.post(url, json={"sequences": [[STEP]] * 2}))
            batcher = engine.registry.get("tiny_bi").batcher
            assert batcher is not None
            # The request crosses a real socket (ZeroMQ's I/O thread): poll, bounded.
            deadline = time.monotonic() + 10
            while batcher.queue_depth != 2:
                assert time.monotonic() < deadline, "the request never reached the engine's queue"
                await asyncio.sleep(0.001)
            rejected = await http.post(url, json={"sequences": [[STEP]]})
            assert rejected.status_code == 429, rejected.text
            assert rejected.headers["Retry-After"] == "1"
            gate.set()
            assert (await running).status_code == 200
            assert len((await queued).json()["results"]) == 2


async def test_a_request_past_its_deadline_is_dropped_in_the_engine_before_it_runs(
    model_repository: Path, tmp_path: Path
) -> None:
    gate, made = threading.Event(), list[GatedRuntime]()
    settings = tiny_settings(
        model_repository, request_timeout_s=0.5, concurrent_batches=1, warmup=False
    )
    async with running_engine(settings, tmp_path, gated_factory(gate, made)) as engine:
        runtime = next(r for r in made if r.spec.name == "tiny_bi")
        async with frontend_of(engine, settings) as http:
            url = "/v1/models/tiny_bi/predict"
            holding = asyncio.ensure_future(http.post(url, json={"sequences": [[STEP] * 2]}))
            assert await asyncio.to_thread(runtime.started.acquire, True, 10)
            late = await http.post(url, json={"sequences": [[STEP] * 7]})  # waits behind it
            assert late.status_code == 504
            gate.set()
            assert (await holding).status_code == 504  # its own deadline passed meanwhile
            again = await http.post(url, json={"sequences": [[STEP] * 3]})
            assert again.status_code == 200
    assert [7] not in runtime.batches, "the late request ran although nobody waited for it"
    assert [3] in runtime.batches


async def test_the_queued_work_of_a_frontend_that_went_silent_is_dropped_before_it_runs(
    model_repository: Path, tmp_path: Path
) -> None:
    gate, made = threading.Event(), list[GatedRuntime]()
    settings = tiny_settings(model_repository, concurrent_batches=1, warmup=False)
    async with running_engine(
        settings, tmp_path, gated_factory(gate, made), peer_timeout_s=0.4
    ) as engine:
        runtime = next(r for r in made if r.spec.name == "tiny_bi")
        context = zmq.asyncio.Context()
        frontend = context.socket(zmq.DEALER)  # a frontend that submits, then dies
        frontend.connect(engine.address)
        deadline = time.monotonic() + 30
        for request_id, length in enumerate((2, 7)):
            submit = Submit(
                request_id, "tiny_bi", "1", deadline, ["probs"],
                [np.full((length, FEATURES), 0.1, np.float32)], [None],
            )  # fmt: skip
            await frontend.send_multipart(encode([submit]))
        assert await asyncio.to_thread(runtime.started.acquire, True, 10)  # 2 runs, 7 waits
        batcher = engine.registry.get("tiny_bi").batcher
        assert batcher is not None
        while batcher.queue_depth != 1:  # bounded by the request's own 30 s deadline
            assert time.monotonic() < deadline
            await asyncio.sleep(0.001)
        frontend.close(linger=0)
        context.term()
        while batcher.queue_depth:  # the engine gives up on the silent frontend
            assert time.monotonic() < deadline, "the silent frontend's work stayed queued"
            await asyncio.sleep(0.01)
        gate.set()
    assert runtime.batches == [[2]], "the dead frontend's queued sequence ran"


async def test_a_malformed_message_is_dropped_and_the_engine_serves_on(
    model_repository: Path, tmp_path: Path
) -> None:
    settings = tiny_settings(model_repository)
    async with running_engine(settings, tmp_path) as engine:
        context = zmq.asyncio.Context()
        peer = context.socket(zmq.DEALER)  # a peer of another version, or a bug
        peer.connect(engine.address)
        await peer.send_multipart([b'[{"op":"submit","arrays":[["<f4",[3]]]}]', b"12345"])
        await peer.send_multipart([b"not json at all"])
        peer.close(linger=1000)
        context.term()
        async with frontend_of(engine, settings) as http:
            answer = await http.post("/v1/models/tiny_bi/predict", json={"sequences": [[STEP]]})
            assert answer.status_code == 200, answer.text


async def test_an_engine_that_stops_makes_the_frontend_answer_503_with_retry_after(
    model_repository: Path, tmp_path: Path
) -> None:
    gate, made = threading.Event(), list[GatedRuntime]()
    settings = tiny_settings(model_repository, concurrent_batches=1, warmup=False)
    async with running_engine(settings, tmp_path, gated_factory(gate, made)) as engine:
        runtime = next(r for r in made if r.spec.name == "tiny_bi")
        async with frontend_of(engine, settings, engine_heartbeat_ms=20.0) as http:
            url = "/v1/models/tiny_bi/predict"
            in_flight = asyncio.ensure_future(http.post(url, json={"sequences": [[STEP]]}))
            assert await asyncio.to_thread(runtime.started.acquire, True, 10)
            engine.close()  # the engine's socket goes: as when its process dies
            lost = await in_flight
            assert lost.status_code == 503, lost.text
            assert lost.headers["Retry-After"] == "1"
            refused = await http.post(url, json={"sequences": [[STEP]]})
            assert refused.status_code == 503
            ready = await http.get("/v2/health/ready")
            assert ready.status_code == 503
            assert (await http.get("/v2/health/live")).status_code == 200  # the frontend lives
            gate.set()


async def test_a_frontend_starts_while_its_engine_cannot_serve_and_answers_503(
    model_repository: Path, tmp_path: Path
) -> None:
    settings = tiny_settings(model_repository)
    async with running_engine(settings, tmp_path) as engine:
        for served in engine.registry.all():  # as between a batcher's death and the restart
            assert isinstance(served.batcher, StreamingBatcher)
            served.batcher.batcher.failure = RuntimeError("died")
        async with frontend_of(engine, settings) as http:
            assert (await http.get("/v2/health/ready")).status_code == 503
            refused = await http.post("/v1/models/tiny_bi/predict", json={"sequences": [[STEP]]})
            assert refused.status_code == 503
            assert refused.headers["Retry-After"] == "1"


async def test_a_frontend_does_not_start_without_its_engine(
    model_repository: Path, tmp_path: Path
) -> None:
    settings = tiny_settings(
        model_repository,
        engine_addresses=[f"ipc://{tmp_path / 'nobody.sock'}"],
        engine_start_timeout_s=0.3,
    )
    with pytest.raises(Exception, match="did not answer"):
        async with app_client(settings) as http:
            await http.get("/v2/health/ready")


async def test_the_frontend_of_a_separate_engine_does_not_load_onnxruntime(
    model_repository: Path,
) -> None:
    import subprocess
    import sys

    code = (
        "import sys, service.frontend.app, service.handoff.remote\n"
        "assert 'onnxruntime' not in sys.modules, 'the frontend imported onnxruntime'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
