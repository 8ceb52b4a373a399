"""The engine's side of the hand-off: a ZeroMQ ROUTER socket in front of the model registry.

Every frontend connects a DEALER socket; each ``Submit`` goes straight to the model's batcher
(whose admission decides: 429 and 503 are answered as ``Failure``), and its sequences' results
go back as one ``Result``. The batchers therefore form their batches from every frontend's
traffic. A ``Cancel`` cancels the sequences' futures, so the batcher drops any not yet run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from service.errors import BatchFailed, ServiceError, Unavailable
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
from service.registry import ModelRegistry

log = logging.getLogger(__name__)

SequenceFutures = list[asyncio.Future[dict[str, Any]]]
Outcome = list[dict[str, Any]] | ServiceError | None
"""How a request ended: its sequences' results, its error, or None (cancelled)."""


class EngineServer:
    """Serves ``registry`` to frontends at ``address`` (``ipc://...`` or ``tcp://...``)."""

    def __init__(
        self,
        registry: ModelRegistry,
        address: str,
        retry_after_s: int = 1,
        peer_timeout_s: float = 6.0,
    ) -> None:
        self.registry = registry
        self.address = address
        self.incarnation = f"{os.getpid()}-{time.time_ns()}"
        self._retry_after = {"Retry-After": str(retry_after_s)}
        self._context = zmq.asyncio.Context()
        self._socket = self._context.socket(zmq.ROUTER)
        self._socket.setsockopt(zmq.LINGER, 1000)  # replies still queued get a second to leave
        # No high-water mark: a ROUTER drops silently what exceeds it. What is queued is bounded
        # by admission (max_queue_sequences) anyway.
        self._socket.setsockopt(zmq.SNDHWM, 0)
        self._socket.bind(address)
        self._requests: dict[tuple[bytes, int], _Request] = {}
        self._peer_timeout_s = peer_timeout_s
        self._last_seen: dict[bytes, float] = {}
        self._outboxes: dict[bytes, Outbox] = {}
        self._idle = asyncio.Event()
        self._idle.set()
        self.draining = False

    @property
    def in_flight(self) -> int:
        """Requests accepted and not yet answered."""
        return len(self._requests)

    async def serve(self) -> None:
        """Receive and dispatch messages until cancelled."""
        sweeping = asyncio.ensure_future(self._forget_silent_peers())
        try:
            while True:
                identity, *frames = await self._socket.recv_multipart(copy=False)
                peer = identity.bytes
                self._last_seen[peer] = time.monotonic()
                try:
                    messages = decode(frames)
                except FrameError as error:  # a bug or a peer of another version: not fatal
                    log.error("dropped a malformed hand-off message: %s", error)
                    continue
                for message in messages:
                    try:
                        self._dispatch(peer, message)
                    except Exception:  # one bad request must not end the engine
                        log.exception("a hand-off message could not be handled")
        finally:
            sweeping.cancel()

    async def _forget_silent_peers(self) -> None:
        """Cancel the requests of frontends silent for ``peer_timeout_s`` (a live one pings
        every ``engine_heartbeat_ms``): a frontend that died leaves no client waiting, so its
        sequences not yet run are dropped instead of computed."""
        while True:
            await asyncio.sleep(self._peer_timeout_s / 4)
            silent_since = time.monotonic() - self._peer_timeout_s
            for peer in [p for p, seen in self._last_seen.items() if seen < silent_since]:
                del self._last_seen[peer]
                self._outboxes.pop(peer, None)
                dropped = [key for key in self._requests if key[0] == peer]
                if dropped:
                    log.warning("a frontend went silent: dropping its %d requests", len(dropped))
                for key in dropped:
                    self._requests[key].cancel()

    def _dispatch(self, peer: bytes, message: Message) -> None:
        match message:
            case Submit():
                self._submit(peer, message)
            case Cancel():
                for request_id in message.ids:
                    request = self._requests.get((peer, request_id))
                    if request is not None:
                        request.cancel()  # sequences not yet run: the batcher drops them
            case Ping():
                self._send(peer, self.pong())
            case Describe():
                self._send(peer, self.description())
            case _:
                log.error("an engine does not take %s messages", type(message).__name__)

    def pong(self) -> Pong:
        models = [
            ModelStatus(
                m.name,
                m.version,
                m.ready and not self.draining,
                m.batcher.queue_depth if m.batcher is not None else 0,
            )
            for m in self.registry.all()
        ]
        return Pong(self.incarnation, models, self.draining)

    def description(self) -> Description:
        models = [
            {
                "name": m.name,
                "version": m.version,
                "spec": m.runtime.spec.to_dict() if m.runtime is not None else None,
                "provider": m.runtime.provider if m.runtime is not None else None,
                "error": m.error,
            }
            for m in self.registry.all()
        ]
        return Description(self.incarnation, models)

    def _submit(self, peer: bytes, message: Submit) -> None:
        try:
            if self.draining:
                raise Unavailable("the engine is shutting down", self._retry_after)
            served = self.registry.get(message.model, message.version)
            if served.batcher is None or not served.ready:
                raise Unavailable(
                    f"model {message.model} version {message.version} is unavailable",
                    self._retry_after,
                )
            futures = served.batcher.submit(
                message.sequences,
                message.states,
                frozenset(message.outputs),
                message.deadline,
                message.stream,
            )
        except ServiceError as error:
            self._send(peer, Failure.of(message.id, error))
            return
        key = (peer, message.id)
        self._requests[key] = _Request(futures, functools.partial(self._answer, peer, message.id))
        self._idle.clear()

    def _answer(self, peer: bytes, request_id: int, outcome: Outcome) -> None:
        """Request ``request_id`` of ``peer`` has ended: its results or its error go out (None:
        it was cancelled, nobody waits for an answer)."""
        if isinstance(outcome, ServiceError):
            self._send(peer, Failure.of(request_id, outcome))
        elif outcome is not None:
            self._send(peer, Result(request_id, outcome))
        self._requests.pop((peer, request_id), None)
        if not self._requests:
            self._idle.set()

    def _send(self, peer: bytes, message: Message) -> None:
        outbox = self._outboxes.get(peer)
        if outbox is None:
            outbox = self._outboxes[peer] = Outbox(functools.partial(self._send_now, peer))
        outbox.put(message)

    def _send_now(self, peer: bytes, messages: list[Message]) -> None:
        if self._socket.closed:  # closed while these waited for the loop: nobody to send to
            log.warning("%d hand-off replies dropped: the engine's socket is closed", len(messages))
            return
        sent = asyncio.ensure_future(
            self._socket.send_multipart([peer, *encode(messages)], copy=False)
        )
        sent.add_done_callback(_log_send_error)

    async def drain(self, timeout_s: float) -> None:
        """Refuse new requests (503) and wait, up to ``timeout_s``, for those accepted."""
        self.draining = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        await asyncio.sleep(0)  # the last answers' outboxes flush (call_soon) before a close

    def close(self) -> None:
        self._socket.close()
        self._context.term()


class _Request:
    """A submitted request's sequences in the batcher; ``done(outcome)`` is called once: with
    every result when the last sequence has one, with the error when one fails (the others are
    cancelled: they need not run), or with None when it is cancelled (no future is waited on,
    no task made: a request costs the engine two callbacks)."""

    def __init__(self, futures: SequenceFutures, done: Callable[[Outcome], None]) -> None:
        self.futures = futures
        self._done = done
        self._remaining = len(futures)
        self._finished = False
        for future in futures:
            future.add_done_callback(self._sequence_done)

    def cancel(self) -> None:
        for future in self.futures:
            future.cancel()

    def _sequence_done(self, future: asyncio.Future[dict[str, Any]]) -> None:
        if self._finished:
            return
        if future.cancelled():
            self._finish(None)
        elif (error := future.exception()) is not None:
            if not isinstance(error, ServiceError):
                log.error("a request failed in the engine: %r", error)
                error = BatchFailed("inference failed")
            self._finish(error)
        else:
            self._remaining -= 1
            if self._remaining == 0:
                self._finish([f.result() for f in self.futures])

    def _finish(self, outcome: Outcome) -> None:
        self._finished = True
        self.cancel()  # one sequence failed or was cancelled: the others need not run
        self._done(outcome)


def _log_send_error(sent: asyncio.Future[Any]) -> None:
    if not sent.cancelled() and sent.exception() is not None:
        with contextlib.suppress(Exception):
            log.error("a hand-off reply could not be sent: %r", sent.exception())
