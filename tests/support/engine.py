"""An engine served in this process (``service.engine.server.EngineServer`` over the tiny
repository, on an IPC socket in a temporary directory), for the tests that reach it through a
frontend app (``create_app`` with ``engine_addresses``) over ASGI."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import zmq

from service.engine.loading import LoadedRuntime, load_registry, onnx_runtime_factory
from service.engine.server import EngineServer
from service.metrics import ServiceMetrics
from service.settings import Settings
from tests.support.service_app import app_client


@asynccontextmanager
async def running_engine(
    settings: Settings,
    directory: Path,
    factory: Callable[..., LoadedRuntime] | None = None,
    peer_timeout_s: float = 60.0,
) -> AsyncIterator[EngineServer]:
    """An engine over ``settings.model_repository`` (runtimes from ``factory``, ORT's by
    default) listening at ``ipc://<directory>/engine.sock`` (``server.address``), dropping the
    work of frontends silent for ``peer_timeout_s``; stopped, its batchers closed, when the
    block ends."""
    registry = await load_registry(settings, ServiceMetrics(), factory or onnx_runtime_factory)
    address = f"ipc://{directory / 'engine.sock'}"
    server = EngineServer(registry, address, settings.retry_after_s, peer_timeout_s)
    serving = asyncio.ensure_future(server.serve())
    try:
        yield server
    finally:
        serving.cancel()
        # A test that closed the engine itself ends it with the error of its closed socket.
        with contextlib.suppress(asyncio.CancelledError, zmq.ZMQError):
            await serving
        await registry.close(1.0)
        server.close()


def frontend_of(
    engine: EngineServer, settings: Settings, **overrides: Any
) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    """A frontend app of ``engine`` (``settings`` with its address, and ``overrides``), its
    lifespan running, and an httpx client to it over ASGI."""
    update = {"engine_addresses": [engine.address], **overrides}
    return app_client(settings.model_copy(update=update))
