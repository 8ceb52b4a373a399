"""One engine process: load the repository, serve it over the hand-off, drain on SIGTERM.

Its exit status is one of ``service.exit_status``: 0 drained, 1 requests cut off at
``drain_timeout_s``, 3 start-up failed, 4 failed while serving (a batcher died or hung).

Started by the supervisor (``service.supervisor``), one per device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized

import zmq

from service.engine.loading import load_registry
from service.engine.server import EngineServer
from service.exit_status import ENGINE_FAILED, NOT_ALL_ANSWERED, STARTUP_FAILURE
from service.logs import configure_logging
from service.metrics import ServiceMetrics
from service.registry import ModelRegistry
from service.settings import Settings

log = logging.getLogger("service.engine")

HEALTH_CHECK_S = 0.1
"""How often the engine looks whether a batcher died or hung."""
BATCHER_CLOSE_S = 5.0
PEER_TIMEOUT_FACTOR = 3.0
"""A frontend silent for this many ``engine_timeout_s`` is gone: its queued work is dropped
(longer than the frontends' own patience, so a briefly busy frontend is not mistaken)."""
FAILED_FLUSH_S = 1.0
"""After a failure, how long the failed requests' answers get to reach the frontends."""


async def serve_engine(
    settings: Settings,
    address: str,
    announce: Callable[[str], None],
    beat: Callable[[], None] = lambda: None,
) -> int:
    """Load, serve at ``address`` until SIGTERM or a failure, drain; the exit status.
    ``announce(incarnation)`` is called once the engine answers, ``beat()`` every
    ``HEALTH_CHECK_S`` from then on, by the event loop: beats that stop mean it is stuck."""
    metrics = ServiceMetrics()
    registry = await load_registry(settings, metrics)
    if not any(m.ready for m in registry.all()):
        errors = "; ".join(f"{m.name}/{m.version}: {m.error}" for m in registry.all())
        log.error("no model can serve from %s: %s", settings.model_repository, errors or "none")
        await registry.close(0)
        return STARTUP_FAILURE
    try:
        server = EngineServer(
            registry,
            address,
            settings.retry_after_s,
            peer_timeout_s=PEER_TIMEOUT_FACTOR * settings.engine_timeout_s,
        )
    except zmq.ZMQError as error:
        log.error("the engine cannot listen at %s: %s", address, error)
        await registry.close(0)
        return STARTUP_FAILURE
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    serving = loop.create_task(server.serve())
    failed = loop.create_task(_failure(registry, beat))
    stopping = loop.create_task(stop.wait())
    log.info(
        "engine ready",
        extra={
            "address": address,
            "models": [f"{m.name}/{m.version}" for m in registry.all()],
            "providers": sorted({m.runtime.provider for m in registry.all() if m.runtime}),
        },
    )
    announce(server.incarnation)
    await asyncio.wait({failed, stopping, serving}, return_when=asyncio.FIRST_COMPLETED)
    if failed.done():
        log.critical("engine failed: %s; exiting so that it is restarted", failed.result())
        await server.drain(FAILED_FLUSH_S)  # the failed requests' answers go out
        status = ENGINE_FAILED
    elif serving.done():
        log.critical("the engine's socket failed: %r", serving.exception())
        status = ENGINE_FAILED
    else:
        log.info("engine draining", extra={"in_flight": server.in_flight})
        await server.drain(settings.drain_timeout_s)
        status = NOT_ALL_ANSWERED if server.in_flight else 0
        await registry.close(BATCHER_CLOSE_S)  # nothing waits now: they stop at once
    for task in (serving, failed, stopping):
        task.cancel()
    server.close()
    log.log(logging.INFO if status == 0 else logging.ERROR, "engine stopped (status %d)", status)
    return status


async def _failure(registry: ModelRegistry, beat: Callable[[], None]) -> str:
    """Returns, naming it, once a model that was serving has failed (its batcher died or hung);
    meanwhile ``beat()`` says the loop runs."""
    while True:
        beat()
        for served in registry.all():
            if served.batcher is not None and served.batcher.failure is not None:
                return f"{served.name}/{served.version}: {served.batcher.failure}"
        await asyncio.sleep(HEALTH_CHECK_S)


def run_engine(
    address: str,
    device: int | None,
    ready: Connection | None,
    heartbeat: Synchronized[float] | None = None,
) -> None:
    """The engine process's entry point (spawned: settings come from the environment); its
    incarnation is sent on ``ready`` once it serves, and ``heartbeat`` (shared memory) holds
    the ``time.monotonic()`` of its event loop's last beat, for the supervisor."""
    settings = Settings()
    if device is not None:
        settings = settings.model_copy(update={"cuda_device_id": device})
    configure_logging(settings.log_level, settings.log_format)
    # Ctrl-C reaches the whole process group; the supervisor stops the engine only after the
    # frontends have drained, with SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def announce(incarnation: str) -> None:
        if ready is not None:
            with contextlib.suppress(OSError):  # a restart: nobody waits on the pipe
                ready.send(incarnation)

    def beat() -> None:
        if heartbeat is not None:
            heartbeat.value = time.monotonic()

    status = asyncio.run(serve_engine(settings, address, announce, beat))
    if status != 0:
        # A failed or cut-off engine may have an ORT call still running in a thread, which
        # interpreter shut-down would wait for, maybe forever.
        logging.shutdown()
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os._exit(status)
    raise SystemExit(status)
