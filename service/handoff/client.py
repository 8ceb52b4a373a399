"""A frontend's side of the hand-off: one ``EngineClient`` per engine, and the ``RemoteBatcher``
that the frontend's registry holds in place of a ``DynamicBatcher``.

An engine is *up* for a frontend while its socket is connected and its last ``Pong`` is recent
(``timeout_s``). When it goes down (the process died: the IPC connection drops at once; it
hangs: no pong) or comes back as another incarnation (restarted), every request this frontend
sent it is failed with 503 and Retry-After: the engine that held them is gone. Until a new
incarnation answers, admission answers 503 and readiness says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from service.errors import Overloaded, ServiceError, Unavailable
from service.handoff.frames import FrameError
from service.handoff.messages import (
    Cancel,
    Describe,
    Description,
    Failure,
    Message,
    ModelStatus,
    Ping,
    Pong,
    Result,
    Submit,
    decode,
    encode,
)
from service.handoff.outbox import Outbox
from service.streaming import StreamChunk

log = logging.getLogger(__name__)

SequenceResult = dict[str, np.ndarray]


@dataclass(eq=False)
class _Pending:
    """A request sent to the engine: one future per sequence, resolved by its one reply."""

    futures: list[asyncio.Future[SequenceResult]]


@dataclass
class EngineClient:
    """The connection of this frontend to the engine at ``address``."""

    address: str
    heartbeat_s: float = 0.1
    timeout_s: float = 2.0
    retry_after_s: int = 1
    incarnation: str | None = None
    status: dict[tuple[str, str], ModelStatus] = field(default_factory=dict)
    draining: bool = False
    _connected: bool = False
    _last_pong: float = -1e9
    _pending: dict[int, _Pending] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=itertools.count)
    _description: asyncio.Future[Description] | None = None
    _answered: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _sequences_pending: int = 0

    def __post_init__(self) -> None:
        self._context = zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.DEALER)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.IMMEDIATE, 1)  # queue nothing for an engine not connected
        self._socket.setsockopt(zmq.SNDHWM, 0)  # bounded by admission, never dropped
        self._monitor = self._socket.get_monitor_socket(
            zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED
        )
        self._retry_after = {"Retry-After": str(self.retry_after_s)}
        self._outbox = Outbox(self._send_now)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, wait_s: float) -> Description:
        """Connect, and return the engine's description once it answers (within ``wait_s``)."""
        self._socket.connect(self.address)
        loop = asyncio.get_running_loop()
        self._description = loop.create_future()
        self._tasks = [
            loop.create_task(self._receive()),
            loop.create_task(self._watch_connection()),
            loop.create_task(self._heartbeat()),
        ]
        try:
            async with asyncio.timeout(wait_s):
                while True:
                    self._send(Describe())
                    with contextlib.suppress(TimeoutError):
                        description = await asyncio.wait_for(asyncio.shield(self._description), 0.5)
                        await self._answered.wait()  # the first pong: its models' status
                        return description
        except TimeoutError:
            await self.close()
            raise Unavailable(f"engine {self.address} did not answer within {wait_s:g} s") from None

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pending:  # nobody will wait for them: the engine need not run them
            self._send(Cancel(list(self._pending)))
        self._fail_pending(Unavailable("the server is shutting down", self._retry_after))
        self._outbox.flush()
        self._monitor.close()
        self._socket.close(linger=100)
        self._context.term()

    @property
    def up(self) -> bool:
        """Connected, and the last pong is recent."""
        return self._connected and time.monotonic() - self._last_pong < self.timeout_s

    def ready_for(self, model: str, version: str) -> bool:
        status = self.status.get((model, version))
        return self.up and not self.draining and status is not None and status.ready

    def load(self) -> int:
        """Sequences this frontend has waiting on the engine (a proxy for how busy it is)."""
        return self._sequences_pending

    # -- requests -------------------------------------------------------------------------------
    def submit(
        self,
        model: str,
        version: str,
        sequences: Sequence[np.ndarray],
        initial_states: Sequence[Mapping[str, np.ndarray] | None],
        output_names: frozenset[str],
        deadline: float,
        stream: StreamChunk | None = None,
    ) -> list[asyncio.Future[SequenceResult]]:
        """Send a request's sequences (with ``stream``: the one chunk of that stream); one
        future per sequence. Cancelling any of them cancels the request in the engine (its
        sequences not yet run are dropped)."""
        if not self.up:
            raise Unavailable(f"the engine at {self.address} is not running", self._retry_after)
        request_id = next(self._ids)
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[SequenceResult]] = [loop.create_future() for _ in sequences]
        message = Submit(
            request_id,
            model,
            version,
            deadline,
            sorted(output_names),
            list(sequences),
            list(initial_states),
            stream,
        )
        self._send(message)
        self._pending[request_id] = _Pending(futures)
        self._sequences_pending += len(futures)
        for future in futures:
            future.add_done_callback(functools.partial(self._on_done, request_id))
        return futures

    def _on_done(self, request_id: int, future: asyncio.Future[SequenceResult]) -> None:
        if future.cancelled() and self._take(request_id) is not None:
            self._send(Cancel([request_id]))

    def _take(self, request_id: int) -> _Pending | None:
        """The pending request ``request_id``, no longer pending (None if it was not)."""
        pending = self._pending.pop(request_id, None)
        if pending is not None:
            self._sequences_pending -= len(pending.futures)
        return pending

    def _send(self, message: Submit | Cancel | Ping | Describe) -> None:
        """Queue ``message``: it leaves with the others of this loop iteration."""
        self._outbox.put(message)

    def _send_now(self, messages: list[Message]) -> None:
        """Send without waiting. To an engine that is not connected the send fails at once
        (``IMMEDIATE``): its submits are failed with 503 (the rest is dropped); what reached an
        engine that goes away is failed when its connection drops."""
        if self._socket.closed:  # closed meanwhile: what it held has been failed already
            return
        sent = self._socket.send_multipart(encode(messages), copy=False, flags=zmq.NOBLOCK)
        sent_future = asyncio.ensure_future(sent)
        sent_future.add_done_callback(functools.partial(self._sent, messages))

    def _sent(self, messages: list[Message], sent: asyncio.Future[Any]) -> None:
        if sent.cancelled() or sent.exception() is None:
            return
        unreachable = Unavailable(
            f"the engine at {self.address} is not reachable", self._retry_after
        )
        for message in messages:
            if isinstance(message, Submit) and (pending := self._take(message.id)) is not None:
                self._fail(pending, unreachable)

    # -- replies --------------------------------------------------------------------------------
    async def _receive(self) -> None:
        while True:
            frames = await self._socket.recv_multipart(copy=False)
            try:
                messages = decode(frames)
            except FrameError as error:
                log.error("dropped a malformed reply from %s: %s", self.address, error)
                continue
            for message in messages:
                self._dispatch(message)

    def _dispatch(self, message: Message) -> None:
        match message:
            case Result():
                pending = self._take(message.id)
                if pending is not None:
                    for future, result in zip(pending.futures, message.results, strict=True):
                        if not future.done():
                            future.set_result(result)
            case Failure():
                pending = self._take(message.id)
                if pending is not None:
                    self._fail(pending, message.error())
            case Pong():
                self._pong(message)
            case Description():
                self._new_incarnation(message.engine)
                if self._description is not None and not self._description.done():
                    self._description.set_result(message)

    def _pong(self, pong: Pong) -> None:
        if not self._connected:
            return  # the last pong of an engine that has gone: it must not revive it
        self._new_incarnation(pong.engine)
        self._last_pong = time.monotonic()
        self._answered.set()
        self.draining = pong.draining
        self.status = {(m.name, m.version): m for m in pong.models}

    def _new_incarnation(self, incarnation: str) -> None:
        if incarnation == self.incarnation:
            return
        if self.incarnation is not None:
            log.warning("engine %s restarted", self.address)
            self._fail_pending(
                Unavailable("the engine restarted while the request ran", self._retry_after)
            )
        self.incarnation = incarnation

    async def _heartbeat(self) -> None:
        was_up = False
        while True:
            self._send(Ping())
            await asyncio.sleep(self.heartbeat_s)
            if was_up and not self.up and self._connected:
                log.error(
                    "engine %s stopped answering (no pong in %g s)", self.address, self.timeout_s
                )
                # Should it come back, it need not compute what nobody waits for any more.
                if self._pending:
                    self._send(Cancel(list(self._pending)))
                self._fail_pending(Unavailable("the engine stopped answering", self._retry_after))
            was_up = self.up

    async def _watch_connection(self) -> None:
        while True:
            event = parse_monitor_message(await self._monitor.recv_multipart())
            if event["event"] == zmq.EVENT_CONNECTED:
                self._connected = True
                self._send(Ping())
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                self._connected = False
                self._last_pong = -1e9
                self.status = {}
                log.error("engine %s disconnected", self.address)
                self._fail_pending(Unavailable("the engine went away", self._retry_after))

    def _fail_pending(self, error: ServiceError) -> None:
        pending, self._pending = self._pending, {}
        self._sequences_pending = 0
        for request in pending.values():
            self._fail(request, error)

    @staticmethod
    def _fail(pending: _Pending, error: ServiceError) -> None:
        for future in pending.futures:
            if not future.done():
                future.set_exception(error)


class RemoteBatcher:
    """A model version served by engines: ``DynamicBatcher``'s admission and submission, each
    request sent to the least loaded engine that can run it."""

    failure: BaseException | None = None
    """Never set: a frontend outlives its engines' failures (they are restarted)."""

    def __init__(
        self, name: str, version: str, engines: Sequence[EngineClient], max_queue: int
    ) -> None:
        self.name = name
        self.version = version
        self.engines = list(engines)
        self._max_queue = max_queue

    @property
    def _ready(self) -> list[EngineClient]:
        return [e for e in self.engines if e.ready_for(self.name, self.version)]

    @property
    def healthy(self) -> bool:
        return bool(self._ready)

    @property
    def queue_depth(self) -> int:
        """Sequences waiting in the engines, as they last reported."""
        key = (self.name, self.version)
        return sum(e.status[key].queue_depth for e in self.engines if key in e.status)

    def _depth(self, engine: EngineClient) -> int:
        return engine.status[(self.name, self.version)].queue_depth

    def check_admission(self, sequences: int = 1) -> None:
        """503 when no engine can run the model; 429 when every one that can reported a full
        queue. Only full: the depth is as of the last pong, and a stale figure must not refuse
        what the engine would take (``sequences`` is for the engine's own admission, which
        decides to the sequence at submission)."""
        ready = self._ready
        if not ready:
            reason = "restarting" if any(e.incarnation for e in self.engines) else "starting"
            if any(e.draining for e in self.engines):
                reason = "shutting down"
            raise Unavailable(
                f"model {self.name} is unavailable: its engine is {reason}",
                {"Retry-After": str(self.engines[0].retry_after_s)},
            )
        if all(self._depth(e) >= self._max_queue for e in ready):
            depth = min(self._depth(e) for e in ready)
            raise Overloaded(
                f"model {self.name} has {depth} sequences waiting (limit {self._max_queue}); "
                "retry later",
                {"Retry-After": str(ready[0].retry_after_s)},
            )

    def submit(
        self,
        sequences: Sequence[np.ndarray],
        initial_states: Sequence[Mapping[str, np.ndarray] | None],
        output_names: frozenset[str],
        deadline: float,
        stream: StreamChunk | None = None,
    ) -> list[asyncio.Future[SequenceResult]]:
        if len(sequences) != len(initial_states):
            raise ValueError(f"{len(sequences)} sequences but {len(initial_states)} states")
        self.check_admission(len(sequences))
        if stream is not None:
            engine = self._stream_engine(stream)
        else:
            engine = min(self._ready, key=lambda e: e.load() + self._depth(e))
        return engine.submit(
            self.name, self.version, sequences, initial_states, output_names, deadline, stream
        )

    def _stream_engine(self, stream: StreamChunk) -> EngineClient:
        """The engine that holds ``stream``'s state: the same one for every chunk, from every
        frontend (a stable hash of its id, not Python's per-process one)."""
        engine = self.engines[zlib.crc32(stream.sequence_id.encode()) % len(self.engines)]
        if not engine.ready_for(self.name, self.version):
            raise Unavailable(
                f"the engine holding stream {stream.sequence_id} is not running",
                {"Retry-After": str(engine.retry_after_s)},
            )
        return engine

    async def close(self, drain_timeout_s: float) -> None:
        """The engines are closed by whoever owns them (one client serves every model)."""
