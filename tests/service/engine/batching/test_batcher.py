"""The dynamic batcher (``service.engine.batching.batcher``) with a fake runtime: flushing,
grouping, isolation, cancellation, supervision and draining. Runs are held back with events, never
with sleeps. Admission under load: ``test_batcher_admission.py``."""

from __future__ import annotations

import asyncio

import pytest

from service.engine.batching import batcher as batcher_module
from service.errors import BatchFailed, DeadlineExceeded, Overloaded, Unavailable
from tests.support.fake_runtime import (
    FEATURES,
    FakeRunner,
    held_batcher,
    make_batcher,
    seq,
    started,
    submit,
)

pytestmark = pytest.mark.anyio


async def test_dispatches_at_once_when_idle_even_with_a_long_max_wait() -> None:
    runner = FakeRunner()
    batcher = make_batcher(runner, wait_s=30.0)
    (future,) = submit(batcher, seq(4, 2.0))
    result = await asyncio.wait_for(future, 5)
    assert float(result["sum"]) == 4 * FEATURES * 2.0
    assert runner.batches == [[4]]


async def test_flushes_on_size_while_busy_and_each_gets_its_own_result() -> None:
    # the first batch holds the only slot
    runner, batcher, first = await held_batcher(seq(3, 0.5), size=4)
    futures = [submit(batcher, seq(3, float(k)))[0] for k in range(10)]
    runner.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*first, *futures), 5)
    assert [len(b) for b in runner.batches] == [1, 4, 4, 2]
    for k, result in enumerate(results[1:]):
        assert float(result["sum"]) == 3 * FEATURES * k


async def test_flushes_on_max_wait_into_a_free_slot() -> None:
    # slot 1 busy, slot 2 free: the next item may wait up to 20 ms
    runner, batcher, blocked = await held_batcher(seq(2), slots=2, wait_s=0.02)
    waiting = submit(batcher, seq(5))
    await started(runner)  # it was dispatched after the wait, while slot 1 is still held
    assert not blocked[0].done()
    runner.gate.set()
    await asyncio.wait_for(asyncio.gather(*blocked, *waiting), 5)
    assert sorted(map(tuple, runner.batches)) == [(2,), (5,)]


async def test_token_budget_bounds_batches() -> None:
    runner, batcher, first = await held_batcher(seq(30), tokens=100)
    rest = submit(batcher, *[seq(30) for _ in range(6)])
    runner.gate.set()
    await asyncio.wait_for(asyncio.gather(*first, *rest), 5)
    assert runner.batches == [[30], [30, 30, 30], [30, 30, 30]]


async def test_groups_waiting_sequences_by_length() -> None:
    runner, batcher, first = await held_batcher(efficiency=0.8)
    rest = submit(batcher, *[seq(n) for n in (5, 100, 6, 101, 7, 102)])
    runner.gate.set()
    await asyncio.wait_for(asyncio.gather(*first, *rest), 5)
    assert [sorted(b) for b in runner.batches[1:]] == [[5, 6, 7], [100, 101, 102]]


async def test_a_failing_batch_fails_only_its_own_requests() -> None:
    runner, batcher, first = await held_batcher(efficiency=0.9)
    good = submit(batcher, seq(50), seq(51))
    bad = submit(batcher, seq(5, -1.0))  # its own length group, so its own batch
    runner.gate.set()
    await asyncio.wait_for(asyncio.gather(*first, *good), 5)
    with pytest.raises(BatchFailed):
        await asyncio.wait_for(bad[0], 5)
    assert batcher.healthy
    (after,) = submit(batcher, seq(2))
    assert float((await asyncio.wait_for(after, 5))["length"]) == 2


async def test_cancelled_items_are_dropped_before_running() -> None:
    runner, batcher, first = await held_batcher()
    gone, kept = submit(batcher, seq(40), seq(41))
    gone.cancel()  # as when the client disconnects or its deadline passes
    runner.gate.set()
    await asyncio.wait_for(asyncio.gather(*first, kept), 5)
    assert runner.batches == [[1], [41]]


async def test_items_past_their_deadline_fail_with_504_without_running() -> None:
    runner, batcher, first = await held_batcher()
    (late,) = submit(batcher, seq(9), deadline_s=-1.0)
    runner.gate.set()
    with pytest.raises(DeadlineExceeded):
        await asyncio.wait_for(late, 5)
    await asyncio.wait_for(asyncio.gather(*first), 5)
    assert runner.batches == [[1]]


async def test_full_queue_rejects_a_whole_request_and_keeps_what_was_accepted() -> None:
    runner, batcher, first = await held_batcher(queue=3)
    accepted = submit(batcher, seq(2), seq(3))
    with pytest.raises(Overloaded) as raised:
        submit(batcher, seq(4), seq(5))
    assert raised.value.headers["Retry-After"] == "1"
    assert batcher.queue_depth == 2
    runner.gate.set()
    await asyncio.wait_for(asyncio.gather(*first, *accepted), 5)
    assert runner.batches == [[1], [2, 3]]


async def test_a_dead_batcher_fails_waiting_work_and_refuses_new(monkeypatch) -> None:
    # a free slot: the next item goes to formation
    runner, batcher, first = await held_batcher(slots=2)

    def broken(*_args, **_kwargs):
        raise RuntimeError("formation bug")

    monkeypatch.setattr(batcher_module, "select_batch", broken)
    (waiting,) = submit(batcher, seq(2))
    with pytest.raises(Unavailable):
        await asyncio.wait_for(waiting, 5)
    assert not batcher.healthy
    assert isinstance(batcher.failure, RuntimeError)
    with pytest.raises(Unavailable):
        submit(batcher, seq(3))
    runner.gate.set()
    await asyncio.wait_for(asyncio.gather(*first), 5)  # the batch already running still ends


async def test_close_finishes_accepted_work_then_refuses() -> None:
    runner, batcher, futures = await held_batcher(size=2)
    futures += submit(batcher, seq(2), seq(3), seq(4))
    closing = asyncio.ensure_future(batcher.close(drain_timeout_s=10))
    await asyncio.sleep(0)  # let close() begin: new work is refused from here on
    with pytest.raises(Unavailable):
        submit(batcher, seq(5))
    runner.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*futures), 5)
    await asyncio.wait_for(closing, 5)
    assert [int(r["length"]) for r in results] == [1, 2, 3, 4]
    assert not batcher.healthy


async def test_a_request_whose_states_do_not_match_its_sequences_queues_nothing() -> None:
    """All or none: a mismatch is refused before any item is queued, so the waiting count
    (which ``max_queue`` is checked against) never drifts."""
    batcher = make_batcher(FakeRunner(), queue=2)
    with pytest.raises(ValueError, match="2 sequences but 1 states"):
        batcher.submit([seq(1), seq(2)], [None], frozenset({"sum"}), float("inf"))
    assert batcher.queue_depth == 0
    futures = submit(batcher, seq(1), seq(2))  # the whole queue is still free
    assert len(await asyncio.gather(*futures)) == 2
    await batcher.close(1.0)
