"""Large bodies decoded, and large responses encoded, in a codec process off the event loop
(``service.frontend.api.offload``, through the ASGI app): the answers are those of inline decoding,
a stopped codec process holds up only the large request, and a stuck or dead one is replaced."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

import numpy as np
import orjson
import pytest

from tests.support.ort_reference import Reference
from tests.support.service_app import app_client
from tests.support.tiny_repository import FEATURES, tiny_settings
from tests.support.v2_bodies import v2_json

pytestmark = pytest.mark.anyio
TOL = 1e-5


def _large_v1_body(rng: np.random.Generator, sequences: int = 64, steps: int = 100) -> bytes:
    data = np.round(rng.standard_normal((sequences, steps, FEATURES)), 4).astype(np.float32)
    return orjson.dumps({"sequences": data.tolist(), "return": ["probabilities"]})


async def test_a_large_body_is_decoded_off_the_event_loop(
    model_repository: Path, reference: Reference
) -> None:
    rng = np.random.default_rng(11)
    body = _large_v1_body(rng)
    assert len(body) > 64 * 1024
    settings = tiny_settings(model_repository, codec_offload_min_bytes=64 * 1024)
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
    settings = tiny_settings(
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
    settings = tiny_settings(model_repository, codec_offload_min_bytes=64 * 1024)
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
    settings = tiny_settings(model_repository, codec_offload_min_bytes=0)  # every body
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


def test_stopping_a_codec_process_that_died_under_a_half_sent_frame_raises_nothing() -> None:
    """A write to a dead codec process leaves bytes in the pipe's buffer; closing it then
    fails with EPIPE. ``stop`` must still close both pipes, so that the request gets its 503
    (not a 500) and no descriptor leaks."""
    from service.frontend.api.offload import _CodecWorker

    worker = _CodecWorker()
    worker.process.kill()
    worker.process.wait()
    assert worker.process.stdin is not None and worker.process.stdout is not None
    worker.process.stdin.write(b"12345678")  # buffered: the flush at close meets EPIPE
    worker.stop()
    assert worker.process.stdin.closed and worker.process.stdout.closed
