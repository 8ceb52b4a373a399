"""The streams' state store (``service.engine.streams``) with a fake clock: the state passes
from chunk to chunk, one stream's chunks take turns in arrival order, the limits (429 past
``max_streams``, expiry after ``idle_timeout_s``, 404 for a stream that is not live), restart
and end, and the events the metrics count."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from service.engine.streams import StreamStore
from service.errors import Overloaded, StreamNotFound

pytestmark = pytest.mark.anyio
KEY = ("lstm", "1", "42")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def stream_event(self, event: str, live: int) -> None:
        self.seen.append((event, live))


async def yield_until(condition: Callable[[], bool]) -> None:
    """Let the other tasks run until ``condition()`` (bounded: they need a few turns)."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    pytest.fail("the condition never came true")


def state(value: float) -> dict[str, np.ndarray]:
    return {"initial_h_0": np.full((1, 4), value, np.float32)}


async def test_the_state_a_chunk_leaves_is_where_the_next_one_starts() -> None:
    store = StreamStore(10, 60.0)
    async with store.chunk(KEY, start=True, end=False) as stream:
        assert stream.state is None  # zeros
        stream.state = state(1.0)
    async with store.chunk(KEY, start=False, end=False) as stream:
        np.testing.assert_array_equal(stream.state["initial_h_0"], state(1.0)["initial_h_0"])
        stream.state = state(2.0)
    async with store.chunk(KEY, start=False, end=True) as stream:
        assert stream.state is not None and stream.state["initial_h_0"][0, 0] == 2.0
    assert store.live == 0 and store.get(KEY) is None
    with pytest.raises(StreamNotFound, match="ended, expired after 60 s idle, or never started"):
        async with store.chunk(KEY, start=False, end=False):
            pass


async def test_a_start_may_bring_its_initial_state_and_a_failed_chunk_changes_nothing() -> None:
    store = StreamStore(10, 60.0)
    async with store.chunk(KEY, start=True, end=False, initial_state=state(5.0)) as stream:
        assert stream.state is not None and stream.state["initial_h_0"][0, 0] == 5.0
        stream.state = state(6.0)
    with pytest.raises(RuntimeError):
        async with store.chunk(KEY, start=False, end=False):
            raise RuntimeError("the batch failed")
    stream = store.get(KEY)
    assert stream is not None and stream.chunks == 1  # the failed chunk did not count
    assert stream.state is not None and stream.state["initial_h_0"][0, 0] == 6.0


async def test_one_streams_chunks_take_turns_in_arrival_order() -> None:
    store = StreamStore(10, 60.0)
    order: list[str] = []
    first_running = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with store.chunk(KEY, start=True, end=False):
            order.append("first starts")
            first_running.set()
            await release_first.wait()
            order.append("first ends")

    async def later(name: str) -> None:
        async with store.chunk(KEY, start=False, end=False):
            order.append(name)

    other_stream_ran = asyncio.Event()

    async def other() -> None:  # another stream is not held up by this one
        async with store.chunk(("lstm", "1", "7"), start=True, end=False):
            other_stream_ran.set()

    tasks = [asyncio.ensure_future(first())]
    await first_running.wait()
    tasks += [asyncio.ensure_future(later("second")), asyncio.ensure_future(later("third"))]
    tasks.append(asyncio.ensure_future(other()))
    await other_stream_ran.wait()
    assert order == ["first starts"]  # the others of stream 42 wait
    release_first.set()
    await asyncio.gather(*tasks)
    assert order == ["first starts", "first ends", "second", "third"]


async def test_past_max_streams_a_new_stream_gets_429_but_live_ones_go_on() -> None:
    events = Events()
    store = StreamStore(2, 60.0, retry_after_s=3, observer=events)
    for sequence_id in ("1", "2"):
        async with store.chunk(("m", "1", sequence_id), start=True, end=False):
            pass
    with pytest.raises(Overloaded, match=r"2 streams are live \(limit 2\)") as refused:
        async with store.chunk(("m", "1", "3"), start=True, end=False):
            pass
    assert refused.value.headers == {"Retry-After": "3"}
    async with store.chunk(("m", "1", "1"), start=False, end=True):
        pass
    async with store.chunk(("m", "1", "3"), start=True, end=False):  # room again
        pass
    assert events.seen == [("started", 1), ("started", 2), ("ended", 1), ("started", 2)]


async def test_an_idle_stream_expires_but_one_in_use_does_not() -> None:
    clock, events = Clock(), Events()
    store = StreamStore(10, 30.0, clock=clock, observer=events)
    async with store.chunk(("m", "1", "idle"), start=True, end=False):
        pass
    clock.now += 10
    busy = store.chunk(("m", "1", "busy"), start=True, end=False)
    await busy.__aenter__()  # a chunk running for a long time
    clock.now += 25  # idle: 35 s, busy: 25 s in use
    assert store.expire() == 1
    assert store.get(("m", "1", "idle")) is None
    clock.now += 100
    assert store.expire() == 0  # in use: never expires
    await busy.__aexit__(None, None, None)
    clock.now += 31
    assert store.expire() == 1
    assert events.seen == [("started", 1), ("started", 2), ("expired", 1), ("expired", 0)]
    with pytest.raises(StreamNotFound):
        async with store.chunk(("m", "1", "idle"), start=False, end=False):
            pass


async def test_a_start_on_a_live_stream_begins_it_again() -> None:
    events = Events()
    store = StreamStore(10, 60.0, observer=events)
    async with store.chunk(KEY, start=True, end=False) as stream:
        stream.state = state(1.0)
    async with store.chunk(KEY, start=True, end=False) as stream:
        assert stream.state is None  # from zeros again
    assert events.seen == [("started", 1), ("restarted", 1)]
    assert store.live == 1


async def test_a_chunk_waiting_behind_the_end_finds_the_stream_gone() -> None:
    store = StreamStore(10, 60.0)
    async with store.chunk(KEY, start=True, end=False):
        pass
    release = asyncio.Event()

    async def ending() -> None:
        async with store.chunk(KEY, start=False, end=True):
            await release.wait()

    async def after() -> None:
        async with store.chunk(KEY, start=False, end=False):
            pass

    stream = store.get(KEY)
    assert stream is not None
    end_task = asyncio.ensure_future(ending())
    await yield_until(lambda: stream.turn.locked())
    after_task = asyncio.ensure_future(after())
    await yield_until(lambda: stream.users == 2)  # it waits behind the end
    release.set()
    await end_task
    with pytest.raises(StreamNotFound):
        await after_task


async def test_saved_streams_are_taken_up_with_their_idle_clocks(tmp_path: Path) -> None:
    clock, events = Clock(), Events()
    store = StreamStore(10, 30.0, clock=clock)
    for sequence_id, value in (("old", 1.0), ("new", 2.0)):
        async with store.chunk(("m", "1", sequence_id), start=True, end=False) as stream:
            stream.state = state(value)
        clock.now += 10
    file = tmp_path / "streams.npz"  # at save: "old" idle 20 s, "new" 10 s
    assert store.save(file) == 2
    later = Clock()
    later.now = 5.0  # another process: another monotonic clock
    restored = StreamStore(10, 30.0, clock=later, observer=events)
    assert restored.load(file) == 2 and not file.exists()  # used once
    stream = restored.get(("m", "1", "new"))
    assert stream is not None and stream.chunks == 1
    assert stream.state is not None and stream.state["initial_h_0"][0, 0] == 2.0
    later.now += 11  # "old" now idle 31 s in all, over the timeout; "new" 21 s
    assert restored.expire() == 1
    assert restored.get(("m", "1", "old")) is None and restored.get(("m", "1", "new"))
    assert events.seen == [("restored", 2), ("expired", 1)]


async def test_a_stream_idle_past_the_timeout_is_not_taken_up(tmp_path: Path) -> None:
    clock = Clock()
    store = StreamStore(10, 30.0, clock=clock)
    async with store.chunk(KEY, start=True, end=False) as stream:
        stream.state = state(1.0)
    clock.now += 31
    store.save(tmp_path / "streams.npz")
    assert StreamStore(10, 30.0).load(tmp_path / "streams.npz") == 0


async def test_idle_streams_are_freed_without_waiting_for_a_chunk() -> None:
    events = Events()
    store = StreamStore(10, 0.2, observer=events)  # the real clock: 0.2 s idle
    async with store.chunk(KEY, start=True, end=False):
        pass
    expiring = asyncio.ensure_future(store.expire_forever())
    try:
        async with asyncio.timeout(10):  # a bound, not a wait: the sweep runs every 0.05 s
            while store.live:
                await asyncio.sleep(0.01)
    finally:
        expiring.cancel()
    assert events.seen == [("started", 1), ("expired", 0)]
