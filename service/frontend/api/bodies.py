"""Reading request bodies within limits: its size (413), the bytes all bodies hold at once
(429, ``BodyBudget``) and the request's deadline (504)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from starlette.requests import ClientDisconnect, Request

from service.errors import (
    ClientClosedRequest,
    DeadlineExceeded,
    MalformedRequest,
    Overloaded,
    PayloadTooLarge,
)


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
