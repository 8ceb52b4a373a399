"""Admission and accounting under load (``service.engine.batching.batcher``, and the app around it):
``max_queue`` counts only live waiting sequences (not those whose request was cancelled or
timed out while every batch slot was busy), and a cancelled request is counted as 499 (never
200)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from service.errors import Overloaded
from tests.support.fake_runtime import held_batcher, seq, submit
from tests.support.service_app import GatedRuntime, app_client, gated_factory, until
from tests.support.tiny_repository import FEATURES, tiny_settings

pytestmark = pytest.mark.anyio

STEP = [0.1] * FEATURES
URL = "/v1/models/tiny_bi/predict"


async def settle() -> None:
    """A few passes of the event loop: the forming task handles its wake-up and goes back to
    waiting for a slot; done-callbacks scheduled by a cancel run."""
    for _ in range(10):
        await asyncio.sleep(0)


async def test_cancelled_items_free_their_queue_places_while_every_slot_is_busy() -> None:
    # the only slot is busy: the forming task waits for it
    runner, batcher, first = await held_batcher(queue=3, slots=1)
    gone = submit(batcher, seq(2), seq(3), seq(4))  # the queue is full
    await settle()  # the forming task saw them, and waits for the busy slot
    with pytest.raises(Overloaded):
        batcher.check_admission(1)
    for future in gone:
        future.cancel()  # their request went away (client gone, deadline)
    await settle()
    assert batcher.queue_depth == 0
    batcher.check_admission(3)  # before: 429, the queue still "held" the cancelled three
    kept = submit(batcher, seq(5), seq(6), seq(7))
    with pytest.raises(Overloaded):  # the live ones still count
        batcher.check_admission(1)
    runner.gate.set()
    await asyncio.wait_for(asyncio.gather(*first, *kept), 5)
    ran = sorted(n for batch in runner.batches for n in batch)
    assert ran == [1, 5, 6, 7]  # the cancelled sequences never ran
    assert batcher.queue_depth == 0


async def test_requests_that_timed_out_in_the_queue_do_not_cause_429s(
    model_repository: Path,
) -> None:
    gate, made = threading.Event(), list[GatedRuntime]()
    settings = tiny_settings(
        model_repository,
        max_queue_sequences=2,
        concurrent_batches=1,
        max_batch_size=1,
        request_timeout_s=1.5,
        warmup=False,
    )
    async with app_client(settings, gated_factory(gate, made)) as http:
        runtime = next(r for r in made if r.spec.name == "tiny_bi")
        running = asyncio.ensure_future(http.post(URL, json={"sequences": [[STEP]]}))
        assert await asyncio.to_thread(runtime.started.acquire, True, 10)  # holds the slot
        expired = await http.post(URL, json={"sequences": [[STEP]] * 2})  # fills the queue
        assert expired.status_code == 504  # its deadline passed while the slot stayed busy
        after = asyncio.ensure_future(http.post(URL, json={"sequences": [[STEP]] * 2}))

        async def queued_or_refused() -> bool:
            metrics = (await http.get("/metrics")).text
            return after.done() or 'lstm_sequences_total{model="tiny_bi"} 5.0' in metrics

        await until(queued_or_refused, "the third request's queueing or refusal")
        gate.set()
        response = await after
        assert response.status_code == 200, response.text  # before: 429 from a dead queue
        assert len(response.json()["results"]) == 2
        await running


async def test_a_cancelled_request_is_counted_as_499_not_200(model_repository: Path) -> None:
    gate, made = threading.Event(), list[GatedRuntime]()
    settings = tiny_settings(model_repository, concurrent_batches=1, warmup=False)
    async with app_client(settings, gated_factory(gate, made)) as http:
        runtime = next(r for r in made if r.spec.name == "tiny_bi")
        # The ASGI transport runs the app in the caller's task: cancelling it cancels the
        # request inside the service, as uvicorn does when it gives up on a request.
        request = asyncio.ensure_future(http.post(URL, json={"sequences": [[STEP]]}))
        assert await asyncio.to_thread(runtime.started.acquire, True, 10)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        gate.set()
        metrics = (await http.get("/metrics")).text
    counted = [line for line in metrics.splitlines() if line.startswith("lstm_requests_total{")]
    assert counted == ['lstm_requests_total{model="tiny_bi",protocol="v1",status="499"} 1.0']
