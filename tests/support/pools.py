"""Request pools for the tiny model (``tests.support.tiny_repository``): the load tester's
encoders fed 4 requests of 1 to 3 sequences, 2 to 40 steps each, and a helper that posts them."""

from __future__ import annotations

import httpx

from loadtest.distributions import parse_int_distribution
from loadtest.payloads import HEADER_LENGTH, PoolSpec, build_pool
from tests.support.tiny_repository import FEATURES, MODEL


def pool_spec(protocol: str, size: int = 4, sequences: str = "1:3") -> PoolSpec:
    """A pool of ``size`` requests of ``sequences`` sequences (2 to 40 steps) for ``MODEL``."""
    return PoolSpec(protocol, MODEL, FEATURES, parse_int_distribution("2:40"),
                    parse_int_distribution(sequences), size, seed=11)  # fmt: skip


async def post_pool(http: httpx.AsyncClient, protocol: str) -> list[tuple[int, bytes, str | None]]:
    """Each request of ``pool_spec(protocol)`` posted in turn, each answered 200:
    ``(index, body, binary header length)``."""
    answers = []
    for k, request in enumerate(build_pool(pool_spec(protocol))):
        response = await http.post(request.path, content=request.body, headers=request.headers)
        assert response.status_code == 200, response.text
        answers.append((k, response.content, response.headers.get(HEADER_LENGTH)))
    return answers
