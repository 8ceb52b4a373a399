"""``bench.naive_server``: the baseline app accepts the load tester's bodies in each protocol and
answers what in-process ORT answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.naive_server import create_naive_app
from loadtest.payloads import PROTOCOLS
from loadtest.verify import parse_model_metadata, verify_samples
from tests.support.asgi import asgi_client
from tests.support.pools import pool_spec, post_pool
from tests.support.tiny_repository import MODEL


@pytest.mark.anyio
@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_naive_baseline_accepts_the_same_bodies(
    protocol: str, model_repository: Path, tiny_model: Path
) -> None:
    async with asgi_client(create_naive_app(model_repository)) as http:
        answers = await post_pool(http, protocol)
        info = parse_model_metadata((await http.get(f"/v2/models/{MODEL}")).json())
    samples = [(k, 200, body, hl) for k, body, hl in answers]
    report = verify_samples(samples, pool_spec(protocol), info, tiny_model)
    assert report["passed"], report
