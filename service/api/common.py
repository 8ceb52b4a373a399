"""What both wire formats share: reading bodies within limits, looking up models, and running
validated sequences through the batcher under the request's deadline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
from fastapi import Request
from fastapi.responses import Response
from pydantic import BaseModel
from starlette.requests import ClientDisconnect

from service.api.offload import CpuOffload
from service.api.validation import RequestRules, encode_json
from service.errors import (
    ClientClosedRequest,
    DeadlineExceeded,
    MalformedRequest,
    Overloaded,
    PayloadTooLarge,
    ServiceError,
    Unavailable,
)
from service.metrics import ServiceMetrics
from service.registry import ModelRegistry, ServedModel
from service.settings import Settings

UNKNOWN_MODEL = "_unknown"


class ErrorBody(BaseModel):
    """Every error response: the KServe V2 error body plus a stable type."""

    error: str
    error_type: str


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer."""
    return {code: {"model": ErrorBody} for code in codes}


INFERENCE_ERRORS = error_responses(400, 401, 404, 413, 422, 429, 500, 503, 504)
METADATA_ERRORS = error_responses(401, 404, 422, 503)


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON body that the route decodes itself (with orjson):
    the schema lives in components (``app.py`` registers it)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }


@dataclass(frozen=True)
class AppContext:
    """What routes need, kept on ``app.state.context`` by the app factory."""

    settings: Settings
    registry: ModelRegistry
    metrics: ServiceMetrics
    offload: CpuOffload
    """Where large bodies are decoded and large responses encoded."""
    bodies: BodyBudget
    """The bytes of request bodies this process holds while they arrive and are decoded."""
    _rules: dict[ServedModel, RequestRules] = field(default_factory=dict)

    def rules(self, served: ServedModel) -> RequestRules:
        """What a request to ``served`` may hold: made once per model version, not per request."""
        rules = self._rules.get(served)
        if rules is None:
            rules = self._rules[served] = RequestRules.of(served.spec, self.settings)
        return rules


def context(request: Request) -> AppContext:
    ctx: AppContext | None = getattr(request.app.state, "context", None)
    if ctx is None:
        raise Unavailable("the server is starting")
    return ctx


def json_response(
    content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response encoded by orjson (numpy arrays allowed)."""
    body = encode_json(content)
    return Response(body, status_code, dict(headers or {}), media_type="application/json")


class BodyBudget:
    """Bounds the bytes of request bodies held at once: each body's bytes are reserved as they
    arrive (all of a declared Content-Length at once) and released once it is decoded. A body
    that does not fit gets 429 before more of it is read, so many large uploads at once cannot
    exhaust memory (``max_connections`` alone bounds only their number)."""

    def __init__(self, max_bytes: int, retry_after_s: int = 1) -> None:
        self.max_bytes = max_bytes
        self.held = 0
        self.retry_after = {"Retry-After": str(retry_after_s)}

    @contextlib.contextmanager
    def holding(self) -> Iterator[BodyHold]:
        """One body's share of the budget, released when the block ends, whatever ends it."""
        hold = BodyHold(self)
        try:
            yield hold
        finally:
            self.held -= hold.size


class BodyHold:
    """The bytes one body holds of a ``BodyBudget``; it only grows."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.size = 0

    def grow_to(self, size: int) -> None:
        """Hold ``size`` bytes in all, or raise 429 (``Overloaded``) if the budget cannot."""
        more = size - self.size
        if more <= 0:
            return
        budget = self.budget
        if budget.held + more > budget.max_bytes:
            raise Overloaded(
                f"the server holds {budget.held} bytes of request bodies and this one needs "
                f"{more} more (limit {budget.max_bytes}); retry later",
                budget.retry_after,
            )
        budget.held += more
        self.size = size


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


async def read_body(request: Request, max_bytes: int, deadline: float, hold: BodyHold) -> bytes:
    """The whole body, refused with 413 as soon as it exceeds ``max_bytes``, with 429 when
    ``hold``'s budget cannot hold it, and with 504 when it has not arrived by ``deadline``
    (``time.monotonic()``): a slow upload holds no connection past the request's deadline."""
    try:
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            return await _read_body(request, max_bytes, hold)
    except TimeoutError:
        raise DeadlineExceeded("the body did not arrive before the request deadline") from None


async def _read_body(request: Request, max_bytes: int, hold: BodyHold) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise MalformedRequest("Content-Length is not a number")
        if int(declared) > max_bytes:
            raise PayloadTooLarge(f"body of {declared} bytes exceeds the limit of {max_bytes}")
        hold.grow_to(int(declared))  # all of it at once: refused before any of it is read
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(f"body exceeds the limit of {max_bytes} bytes")
            hold.grow_to(size)  # no (or a lying) Content-Length: held as it arrives
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientClosedRequest("the client disconnected while sending the body") from None
    return b"".join(chunks)


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
) -> list[dict[str, np.ndarray]]:
    """Queue the sequences and wait for their results, the deadline or the client leaving.

    If the deadline passes or the client goes, the sequences' futures are cancelled, so any
    that have not run yet are dropped by the batcher instead of computed.
    """
    assert served.batcher is not None
    deadline = arrived + ctx.settings.request_timeout_s
    futures = served.batcher.submit(sequences, initial_states, output_names, deadline)
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
