"""What the hand-off between a frontend and the engine costs per request, in server CPU.

``measure_handoff`` runs, in this one process and with inference skipped
(``bench.http_ceiling.null_runtime_factory``), an ``EngineServer`` over the repository and an
``EngineClient`` to it over ``ipc://`` in a temporary folder, then sends the same request
``requests`` times, ``in_flight`` at a time: one sequence ``(L, F)`` of float32 asking for
``probs`` and ``logits``, through the client's ``RemoteBatcher`` (frames, ZeroMQ, the engine's
dispatch, the reply) and straight to the model's ``DynamicBatcher`` (the one-process path).
``time.process_time`` counts every thread of the process, ZeroMQ's I/O threads included, so
the difference of the two CPU figures is what both sides of the hand-off cost together. No HTTP
is involved: the figure adds to the service's own CPU per request (``TimeBreakdown``).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.http_ceiling import null_runtime_factory
from bench.records import HandoffCost
from service.engine.loading import load_registry
from service.engine.server import EngineServer
from service.handoff.client import EngineClient, RemoteBatcher
from service.metrics import ServiceMetrics
from service.registry import Scheduler
from service.settings import Settings

OUTPUTS = frozenset({"probs", "logits"})
WARMUP_REQUESTS = 256
"""Sent through each path before it is measured (first batches, first frames)."""


async def _drive(
    scheduler: Scheduler, sequence: np.ndarray, requests: int, in_flight: int
) -> tuple[float, float]:
    """``requests`` one-sequence requests through ``scheduler``, ``in_flight`` at a time; the
    CPU and wall seconds they took."""

    async def client(count: int) -> None:
        for _ in range(count):
            deadline = time.monotonic() + 60.0
            await asyncio.gather(*scheduler.submit([sequence], [None], OUTPUTS, deadline))

    shares = [requests // in_flight + (k < requests % in_flight) for k in range(in_flight)]
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(client(n) for n in shares if n))
    return time.process_time() - cpu, time.perf_counter() - wall


async def _measure(
    settings: Settings, model: str, requests: int, in_flight: int, length: int
) -> HandoffCost:
    registry = await load_registry(settings, ServiceMetrics(), null_runtime_factory)
    served = registry.get(model)
    if served.batcher is None:
        await registry.close(1.0)
        raise RuntimeError(f"model {model} did not load: {served.error}")
    features = served.spec.input_size
    sequence = np.random.default_rng(0).standard_normal((length, features), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="bench-handoff-") as folder:
        server = EngineServer(registry, f"ipc://{Path(folder) / 'engine.sock'}")
        serving = asyncio.ensure_future(server.serve())
        engine = EngineClient(server.address)
        try:
            await engine.start(wait_s=10.0)
            remote = RemoteBatcher(
                served.name, served.version, [engine], settings.max_queue_sequences
            )
            figures = {}
            for name, scheduler in (("direct", served.batcher), ("remote", remote)):
                await _drive(scheduler, sequence, WARMUP_REQUESTS, in_flight)
                figures[name] = await _drive(scheduler, sequence, requests, in_flight)
        finally:
            await engine.close()
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
            await registry.close(1.0)
            server.close()
    (direct_cpu, direct_wall), (remote_cpu, remote_wall) = figures["direct"], figures["remote"]
    per_request_us = 1e6 / requests
    return HandoffCost(
        model=model,
        requests=requests,
        in_flight=in_flight,
        length=length,
        features=features,
        direct_cpu_us=direct_cpu * per_request_us,
        remote_cpu_us=remote_cpu * per_request_us,
        handoff_cpu_us=(remote_cpu - direct_cpu) * per_request_us,
        direct_wall_us=direct_wall * per_request_us,
        remote_wall_us=remote_wall * per_request_us,
    )


def measure_handoff(
    repository: Path,
    model: str,
    *,
    requests: int = 3000,
    in_flight: int = 64,
    length: int = 105,
    provider: str = "cpu",
    settings: Settings | None = None,
) -> HandoffCost:
    """The hand-off's cost per request for ``model`` of ``repository`` (see the module's
    docstring), under the service's ``settings`` (its defaults when None) with the repository
    and provider of the arguments: the provider picks the batching policy the null runtime is
    batched under. Takes a few seconds."""
    base = settings or Settings()
    update = {"model_repository": repository, "provider": provider, "warmup": False}
    settings = base.model_copy(update=update)
    return asyncio.run(_measure(settings, model, requests, in_flight, length))
