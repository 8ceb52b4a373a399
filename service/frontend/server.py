"""The HTTP server of one process: uvicorn's, with a drain that counts what it answered.

SIGTERM (or SIGINT) drains: stop accepting, answer the requests in flight (up to
``drain_timeout_s``), stop the batchers, then exit with a status that says how it went:

* 0: every request in flight was answered;
* 1: some were not (cut off at ``drain_timeout_s``), or a worker did not stop cleanly;
* 2: no model repository; 3: start-up failed (no model can serve, the port is taken).

uvicorn itself re-raises the SIGTERM it caught once it has shut down, so the process died of it
(status 143 in a shell) however clean the drain; ``DrainingServer`` exits with the status above.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
from collections.abc import Generator

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.server import HANDLED_SIGNALS

from service.exit_status import NOT_ALL_ANSWERED, STARTUP_FAILURE

log = logging.getLogger("service")

UNWIND_S = 5.0
"""After the drain, how long requests cancelled at its timeout get to unwind."""


class RequestTracker:
    """ASGI middleware: counts the HTTP requests in progress, and those that ended with their
    response complete (answered) or not (cancelled: cut off at the drain timeout)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.in_flight = 0
        self.answered = 0
        self.unanswered = 0
        self._idle: asyncio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        complete = False

        async def tracked(message: Message) -> None:
            nonlocal complete
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True

        self.in_flight += 1
        try:
            await self.app(scope, receive, tracked)
        finally:
            self.in_flight -= 1
            if complete:
                self.answered += 1
            else:
                self.unanswered += 1
            if self.in_flight == 0 and self._idle is not None:
                self._idle.set()

    async def wait_idle(self, timeout_s: float) -> None:
        """Return once no request is in progress, or after ``timeout_s``."""
        if self.in_flight == 0:
            return
        self._idle = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)


class DrainingServer(uvicorn.Server):
    """uvicorn's server, counting the requests answered during the drain; ``exit_status`` after
    ``run()`` is the process's exit status (the module docstring lists them)."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.requests: RequestTracker | None = None
        self.drained_answered = 0
        self.drained_unanswered = 0

    @property
    def exit_status(self) -> int:
        if not self.started:
            return STARTUP_FAILURE
        return NOT_ALL_ANSWERED if self.drained_unanswered else 0

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        if not self.config.loaded:
            try:
                self.config.load()
            except SystemExit:  # uvicorn has logged why the app cannot be imported
                raise SystemExit(STARTUP_FAILURE) from None
            except Exception:  # the factory failed: a new worker would fail alike
                log.exception("the app could not be built")
                raise SystemExit(STARTUP_FAILURE) from None
        self.requests = RequestTracker(self.config.loaded_app)  # type: ignore[arg-type]
        self.config.loaded_app = self.requests  # type: ignore[assignment]
        await super().serve(sockets)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        requests = self.requests
        assert requests is not None
        answered, unanswered = requests.answered, requests.unanswered
        log.info(
            "shutting down: draining the requests in flight",
            extra={
                "in_flight": requests.in_flight,
                "drain_timeout_s": self.config.timeout_graceful_shutdown,
            },
        )
        await super().shutdown(sockets)  # waits for them (cancels the rest), then the lifespan
        await requests.wait_idle(UNWIND_S)
        self.drained_answered = requests.answered - answered
        # Still running now: a request the drain could not cancel; it is not answered either.
        self.drained_unanswered = requests.unanswered - unanswered + requests.in_flight
        total = self.drained_answered + self.drained_unanswered
        log.log(
            logging.ERROR if self.drained_unanswered else logging.INFO,
            "drained: answered %d of %d requests in flight",
            self.drained_answered,
            total,
            extra={"answered": self.drained_answered, "unanswered": self.drained_unanswered},
        )

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """uvicorn's, but the caught signal is not raised again once shut down (that killed the
        process with its own SIGTERM): ``exit_status`` says how the drain went instead."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in HANDLED_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
