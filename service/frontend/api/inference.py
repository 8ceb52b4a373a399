"""What both wire formats do to run a request: admit it (the model version to serve, before
the body is read), read and decode its body, run its validated sequences through the batcher
under the request's deadline, and count it in the metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import numpy as np
from starlette.requests import Request

from service.errors import ClientClosedRequest, DeadlineExceeded, ServiceError, Unavailable
from service.frontend.api.bodies import read_body
from service.frontend.api.context import AppContext
from service.registry import ServedModel
from service.streaming import StreamChunk

UNKNOWN_MODEL = "_unknown"

R = TypeVar("R")


async def read_and_decode(
    request: Request,
    ctx: AppContext,
    deadline: float,
    decode: Callable[..., R],
    *args: Any,
) -> R:
    """Read the body (within ``max_body_bytes``, ``max_buffered_body_bytes`` and ``deadline``)
    and return ``decode(body, *args)``, run off the event loop when the body is large."""
    with ctx.bodies.holding() as hold:
        body = await read_body(request, ctx.settings.max_body_bytes, deadline, hold)
        return await ctx.offload.run(len(body), deadline, decode, body, *args)


def serving_model(ctx: AppContext, name: str, version: str | None) -> ServedModel:
    """The model version to run, or 404 (unknown) / 503 (not loaded or not healthy)."""
    served = ctx.registry.get(name, version)
    if served.batcher is not None:
        served.batcher.check_admission()  # shed load before reading and decoding the body
    if not served.ready:
        reason = served.error or "its batcher is not running"
        raise Unavailable(
            f"model {name} version {served.version} is unavailable: {reason}",
            {"Retry-After": str(ctx.settings.retry_after_s)},
        )
    return served


async def admit_and_decode(
    request: Request,
    ctx: AppContext,
    name: str,
    version: str | None,
    arrived: float,
    decode: Callable[..., R],
    *args: Any,
) -> tuple[ServedModel, float, R]:
    """What both wire formats do before running a request: the model version to serve (404,
    503 or 429 before the body is read, by ``serving_model``), the request's deadline
    (``time.monotonic()``), and the body decoded by ``decode(body, *args, rules)`` under the
    model's ``RequestRules``."""
    served = serving_model(ctx, name, version)
    deadline = arrived + ctx.settings.request_timeout_s
    rules = ctx.rules(served)
    decoded = await read_and_decode(request, ctx, deadline, decode, *args, rules)
    return served, deadline, decoded


async def _client_gone(request: Request) -> None:
    """Returns when the client disconnects (the body has been read, so only that can arrive)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def run_sequences(
    request: Request,
    ctx: AppContext,
    served: ServedModel,
    sequences: Sequence[np.ndarray],
    initial_states: Sequence[Mapping[str, np.ndarray] | None],
    output_names: frozenset[str],
    arrived: float,
    stream: StreamChunk | None = None,
) -> list[dict[str, np.ndarray]]:
    """Queue the sequences and wait for their results, the deadline or the client leaving.

    If the deadline passes or the client goes, the sequences' futures are cancelled, so any
    that have not run yet are dropped by the batcher instead of computed.
    """
    assert served.batcher is not None
    deadline = arrived + ctx.settings.request_timeout_s
    futures = served.batcher.submit(sequences, initial_states, output_names, deadline, stream)
    ctx.metrics.sequences.labels(served.name).inc(len(sequences))
    results = asyncio.gather(*futures)
    gone = asyncio.ensure_future(_client_gone(request))
    waiting: set[asyncio.Future[Any]] = {results, gone}
    try:
        done, _ = await asyncio.wait(
            waiting,
            timeout=max(0.0, deadline - time.monotonic()),
            return_when=asyncio.FIRST_COMPLETED,
        )
        if results in done:
            return list(results.result())
        if gone in done:
            raise ClientClosedRequest("the client disconnected")  # nobody reads this response
        raise DeadlineExceeded(
            f"no result within the {ctx.settings.request_timeout_s:g} s deadline"
        )
    finally:
        gone.cancel()
        # Whatever ended the wait (an answer, an error in one batch, the deadline, the client
        # leaving), sequences of this request not yet run are dropped by the batcher.
        for future in futures:
            future.cancel()
        if not results.done():
            results.cancel()
        # A gather whose children were cancelled ends holding a CancelledError that nobody
        # awaits: retrieve it, or asyncio logs "exception was never retrieved" for each.
        results.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


@asynccontextmanager
async def observed(
    ctx: AppContext, model: str, protocol: str, arrived: float
) -> AsyncIterator[None]:
    """Count the request by model, protocol and final status, and time it.

    A request cancelled while it runs (its task cancelled: the client's connection went, or the
    server's drain timed out) is answered by nobody, so it counts as 499, never as 200.
    """
    status = 200
    try:
        yield
    except ServiceError as error:
        status = error.status_code
        raise
    except asyncio.CancelledError:  # a BaseException: ``except Exception`` never sees it
        status = ClientClosedRequest.status_code
        raise
    except BaseException:
        status = 500
        raise
    finally:
        # Label only with models that exist: names from the URL would grow the label set
        # without bound.
        label = model if model in ctx.registry.models else UNKNOWN_MODEL
        ctx.metrics.requests.labels(label, protocol, str(status)).inc()
        ctx.metrics.request_latency.labels(label, protocol).observe(time.monotonic() - arrived)
