"""The service's app in process, for the tests that reach it over ASGI (``tests/service``):
``app_client`` (the app with its lifespan running, and an httpx client to it), a real runtime
whose runs wait for a gate (``GatedRuntime``, built by ``gated_factory``), to hold batches in
flight while a test looks, and ``until``, which lets the event loop run until something holds."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import pytest

from service.engine.loading import LoadedRuntime, onnx_runtime_factory
from service.frontend.app import create_app
from service.settings import Settings
from tests.support.asgi import asgi_client


def app_client(
    settings: Settings, factory: Callable[..., LoadedRuntime] | None = None
) -> AbstractAsyncContextManager[httpx.AsyncClient]:
    """``create_app(settings)`` (with ``factory`` building its runtimes, if given), its lifespan
    running, and an httpx client talking to it over ASGI."""
    return asgi_client(create_app(settings) if factory is None else create_app(settings, factory))


async def until(condition: Callable[[], bool | Awaitable[bool]], what: str) -> None:
    """Yield to the event loop until ``condition()`` (which may be a coroutine) holds; after
    10,000 turns of the loop the test fails saying ``what`` never happened. The loop's own
    progress is what is waited for, never a length of time."""
    for _ in range(10_000):
        await asyncio.sleep(0)
        holds = condition()
        if inspect.isawaitable(holds):
            holds = await holds
        if holds:
            return
    pytest.fail(f"{what} never happened")


class GatedRuntime:
    """A real runtime whose runs wait for ``gate`` (to hold batches in flight in tests).

    ``started`` is released as each run begins; ``batches`` records the lengths of every batch
    run (warm-up runs go to the inner runtime directly and are not recorded).
    """

    def __init__(self, inner: LoadedRuntime, gate: threading.Event) -> None:
        self.inner = inner
        self.gate = gate
        self.spec = inner.spec
        self.provider = inner.provider
        self.device = inner.device
        self.on_gpu = inner.on_gpu
        self.started = threading.Semaphore(0)
        self.batches: list[list[int]] = []  # lengths of every batch run

    def warmup(self, batch_sizes: list[int], lengths: list[int]) -> float:
        return self.inner.warmup(batch_sizes, lengths)

    def run_batch(self, sequences, initial_states, output_names):  # type: ignore[no-untyped-def]
        self.started.release()
        assert self.gate.wait(20), "the test never opened the gate"
        self.batches.append([len(s) for s in sequences])
        return self.inner.run_batch(sequences, initial_states, output_names)


def gated_factory(gate: threading.Event, made: list[GatedRuntime]) -> Callable[..., LoadedRuntime]:
    """A runtime factory for ``create_app``: the service's own runtimes, each wrapped in a
    ``GatedRuntime`` on ``gate`` and appended to ``made``."""

    def factory(path: Path, name: str, version: str, settings: Settings) -> LoadedRuntime:
        runtime = GatedRuntime(onnx_runtime_factory(path, name, version, settings), gate)
        made.append(runtime)
        return runtime  # type: ignore[return-value]

    return factory
