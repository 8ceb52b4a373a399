"""The route table (``service.frontend.api.routes``) and the one error renderer: every inference
path is served alike by the fast path and by FastAPI's router (which the documentation describes),
and errors read the same whichever layer renders them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from service.frontend.api import v1
from service.frontend.api.fast_path import InferenceFastPath
from service.frontend.app import INFERENCE_ROUTES, create_app
from tests.support.tiny_repository import FEATURES, tiny_settings
from tests.support.v2_bodies import v2_json

pytestmark = pytest.mark.anyio
STEP = [0.5] * FEATURES


def test_each_inference_path_is_one_fastapi_route_matching_what_the_fast_path_matches() -> None:
    app = create_app(tiny_settings(Path("unused")))
    api_routes = {r.path: r for r in app.routes if isinstance(r, APIRoute)}
    for route in INFERENCE_ROUTES:
        for path in route.paths:
            api_route = api_routes[path.template]
            assert api_route.methods == {"POST"}
            pattern = path.pattern()
            base = f"{route.prefix}/models"
            for candidate in [
                f"{base}/m/{route.action}",
                f"{base}/m/versions/2/{route.action}",
                f"{base}/a/b/{route.action}",
                f"{base}/m/versions/2/x/{route.action}",
                f"{base}//{route.action}",
                f"{base}/m/{route.action}/",
            ]:
                assert bool(pattern.fullmatch(candidate)) == bool(
                    api_route.path_regex.match(candidate)
                ), (path.template, candidate)


@asynccontextmanager
async def served(repo: Path, fast_path: bool) -> AsyncIterator[httpx.AsyncClient]:
    """The app, with or without its fast path, reached over ASGI; app exceptions that reach
    the server (after the 500 is sent, as Starlette does) are not raised into the test."""
    app: FastAPI = create_app(tiny_settings(repo))
    if not fast_path:  # the middleware stack is built on the first request, from this list
        app.user_middleware = [m for m in app.user_middleware if m.cls is not InferenceFastPath]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


REQUESTS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/models/tiny_bi/predict", {"sequences": [[STEP, STEP]]}),
    ("/v1/models/tiny_bi/versions/1/predict", {"sequences": [[STEP]]}),
    ("/v2/models/tiny_uni/infer", v2_json(np.full((1, 2, FEATURES), 0.5, np.float32))),
    ("/v2/models/tiny_uni/versions/1/infer", v2_json(np.full((1, 3, FEATURES), 0.5, np.float32))),
    ("/v2/models/nope/infer", v2_json(np.full((1, 3, FEATURES), 0.5, np.float32))),
    ("/v1/models/tiny_bi/predict", {"sequences": "not a list"}),
]


async def test_fastapis_router_answers_inference_as_the_fast_path_does(
    model_repository: Path,
) -> None:
    answers: dict[bool, list[tuple[int, Any]]] = {}
    for fast_path in (True, False):
        async with served(model_repository, fast_path) as http:
            responses = [await http.post(path, json=body) for path, body in REQUESTS]
            answers[fast_path] = [(r.status_code, r.json()) for r in responses]
    assert [status for status, _ in answers[True]] == [200, 200, 200, 200, 404, 422]
    assert answers[True] == answers[False]


@pytest.mark.parametrize("fast_path", [True, False])
async def test_an_unexpected_error_is_a_bare_500_on_either_route(
    model_repository: Path, monkeypatch: pytest.MonkeyPatch, fast_path: bool
) -> None:
    async def boom(*_: Any) -> None:
        raise RuntimeError("/secret/path in the message")

    monkeypatch.setattr(v1, "run_sequences", boom)
    async with served(model_repository, fast_path) as http:
        response = await http.post("/v1/models/tiny_bi/predict", json={"sequences": [[STEP]]})
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error", "error_type": "internal"}


async def test_router_refusals_render_as_errors(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v3/nothing")
    assert (missing.status_code, missing.json()["error_type"]) == (404, "http")
    wrong_method = await client.get("/v2/models/tiny_bi/infer")
    assert (wrong_method.status_code, wrong_method.json()["error_type"]) == (405, "http")
    assert wrong_method.headers["allow"] == "POST"
