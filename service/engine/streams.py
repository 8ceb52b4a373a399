"""The streams' state store: for each live stream (a model version and a client's sequence id),
the LSTM state its last chunk left, held in the engine between chunks.

Shapes: each state is ``(dirs, H_n)`` per state input (``initial_{c|h}_{n}``), as a single
sequence's ``final_*`` outputs come back from the batcher.

Rules (the V2 sequence extension's, as Triton's sequence batcher keeps them):

* one stream's chunks take turns (``chunk``): each waits for the one before it, in arrival
  order, so two chunks of a stream never run in one batch and the state passes from one to the
  next; different streams' chunks run, and batch, together;
* a chunk with ``start`` begins the stream from zeros (or the state it brings); a start on a
  stream that is live begins it again (the documented choice: a client that lost track of its
  stream restarts it, rather than being refused);
* a chunk without ``start`` needs a live stream, else ``StreamNotFound`` (404): it expired, it
  ended, or it never started;
* a chunk with ``end`` frees the stream once it has run;
* at most ``max_streams`` live streams: a new one past it is refused with 429 and Retry-After;
* a stream idle for ``idle_timeout_s`` (no chunk running or waiting) is freed.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from service.errors import Overloaded, StreamNotFound

StreamKey = tuple[str, str, str]
"""(model, version, sequence id): ids are strings here (a uint64 id is its decimal text)."""
State = Mapping[str, np.ndarray]


class StreamObserver(Protocol):
    """Receives the store's events (the metrics implement it)."""

    def stream_event(self, event: str, live: int) -> None:
        """``event``: started, restarted, ended or expired; ``live``: streams live after it."""


class _NullObserver:
    def stream_event(self, event: str, live: int) -> None:
        pass


@dataclass(eq=False)
class Stream:
    """One live stream: the state its last chunk left (None: zeros), and whose turn it is."""

    key: StreamKey
    last_used: float
    state: State | None = None
    chunks: int = 0
    """Chunks that have run."""
    users: int = 0
    """Chunks running or waiting for their turn: a stream in use never expires."""
    ended: bool = False
    turn: asyncio.Lock = field(default_factory=asyncio.Lock)


class StreamStore:
    """The live streams of one engine (every model's)."""

    def __init__(
        self,
        max_streams: int,
        idle_timeout_s: float,
        *,
        retry_after_s: int = 1,
        observer: StreamObserver | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_streams = max_streams
        self.idle_timeout_s = idle_timeout_s
        self._retry_after = {"Retry-After": str(retry_after_s)}
        self._observer = observer or _NullObserver()
        self._clock = clock
        self._live: OrderedDict[StreamKey, Stream] = OrderedDict()  # least recently used first

    @property
    def live(self) -> int:
        return len(self._live)

    def get(self, key: StreamKey) -> Stream | None:
        return self._live.get(key)

    @asynccontextmanager
    async def chunk(
        self, key: StreamKey, start: bool, end: bool, initial_state: State | None = None
    ) -> AsyncIterator[Stream]:
        """The stream's turn for one chunk: the block runs with ``stream.state`` the state to
        start the chunk from and sets it to the state the chunk left (``advance``). A chunk
        whose block raises leaves the state as it was."""
        stream = self._open(key, start)
        stream.users += 1
        try:
            async with stream.turn:
                if start:
                    stream.state = initial_state
                    stream.ended = False
                elif stream.ended or self._live.get(key) is not stream:
                    raise self._not_found(key)
                yield stream
                stream.chunks += 1
                stream.last_used = self._clock()
                if end:
                    self._end(stream, "ended")
        finally:
            stream.users -= 1
            stream.last_used = self._clock()
            if self._live.get(key) is stream:
                self._live.move_to_end(key)  # the order stays that of last use

    def _open(self, key: StreamKey, start: bool) -> Stream:
        now = self._clock()
        self.expire(now)
        stream = self._live.get(key)
        if stream is None:
            if not start:
                raise self._not_found(key)
            if len(self._live) >= self.max_streams:
                raise Overloaded(
                    f"{len(self._live)} streams are live (limit {self.max_streams}); end some "
                    "with sequence_end, or retry later",
                    self._retry_after,
                )
            stream = self._live[key] = Stream(key, now)
            self._observer.stream_event("started", len(self._live))
        elif start:
            self._observer.stream_event("restarted", len(self._live))
        self._live.move_to_end(key)
        stream.last_used = now
        return stream

    def expire(self, now: float | None = None) -> int:
        """Free the streams idle for ``idle_timeout_s``; how many."""
        now = self._clock() if now is None else now
        expired = []
        for stream in self._live.values():  # least recently used first: stop at a fresh one
            if now - stream.last_used <= self.idle_timeout_s:
                break
            if not stream.users:
                expired.append(stream)
        for stream in expired:
            self._end(stream, "expired")
        return len(expired)

    async def expire_forever(self) -> None:
        """Free idle streams every quarter of the timeout (at least each second), so that idle
        streams do not wait for the next chunk to be freed (nor linger in the metrics)."""
        while True:
            await asyncio.sleep(min(max(self.idle_timeout_s / 4, 0.05), 1.0))
            self.expire()

    def save(self, path: Path) -> int:
        """Write every live stream (its key, state, chunks run and idle time) to ``path`` (npz,
        written beside and renamed: a crash never leaves half a file); how many."""
        now = self._clock()
        index, arrays = [], {}
        for k, stream in enumerate(self._live.values()):
            state = dict(stream.state or {})
            index.append(
                {
                    "key": list(stream.key),
                    "idle_s": now - stream.last_used,
                    "chunks": stream.chunks,
                    "state": sorted(state),
                }
            )
            arrays.update({f"{k}_{name}": np.asarray(a) for name, a in state.items()})
        arrays["index"] = np.frombuffer(json.dumps(index).encode(), np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with partial.open("wb") as file:
            np.savez(file, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds badly
        os.replace(partial, path)
        return len(index)

    def load(self, path: Path) -> int:
        """Take up the streams ``save`` wrote to ``path``, with their idle clocks (those idle
        past the timeout meanwhile are dropped), then remove the file: it is used once. How
        many streams are live from it."""
        now = self._clock()
        with np.load(path, allow_pickle=False) as data:
            index = json.loads(bytes(data["index"]))
            entries = sorted(enumerate(index), key=lambda e: -float(e[1]["idle_s"]))
            for k, entry in entries:  # least recently used first, as the store keeps them
                if entry["idle_s"] > self.idle_timeout_s or len(self._live) >= self.max_streams:
                    continue
                key: StreamKey = (str(entry["key"][0]), str(entry["key"][1]), str(entry["key"][2]))
                state = {name: data[f"{k}_{name}"] for name in entry["state"]}
                self._live[key] = Stream(
                    key, now - float(entry["idle_s"]), state or None, int(entry["chunks"])
                )
        path.unlink()
        self._observer.stream_event("restored", len(self._live))
        return len(self._live)

    def _end(self, stream: Stream, event: str) -> None:
        stream.ended = True
        if self._live.get(stream.key) is stream:
            del self._live[stream.key]
            self._observer.stream_event(event, len(self._live))

    def _not_found(self, key: StreamKey) -> StreamNotFound:
        model, version, sequence_id = key
        return StreamNotFound(
            f"sequence {sequence_id} of model {model} version {version} is not a live stream: "
            f"it ended, expired after {self.idle_timeout_s:g} s idle, or never started (send "
            "its first chunk with sequence_start)"
        )
