"""The inference endpoints, declared once: each ``InferenceRoute`` feeds FastAPI's router (the
OpenAPI documentation, and an answer to any request that reaches the router) and the fast
path's matchers (``fast_path.py``), so the two cannot disagree on a path."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import FastAPI, Path
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from service.frontend.api.docs import body_schema

Handler = Callable[[Request, str, str | None], Awaitable[Response]]
"""``handler(request, name, version)``; ``version`` is None for the model's default version.
It reads and decodes the body itself, so no router decodes anything for it."""

Name = Annotated[str, Path(description="model name")]
Version = Annotated[str, Path(description="model version (a positive integer)")]

_PARAMETER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class RoutePath:
    """One of an endpoint's two paths."""

    template: str
    """The path with ``{name}`` (and ``{version}``), as FastAPI and OpenAPI write it."""
    operation: str
    """FastAPI's route name, the stem of the OpenAPI ``operationId``."""
    summary: str

    @property
    def versioned(self) -> bool:
        return "{version}" in self.template

    def pattern(self) -> re.Pattern[str]:
        """The template as a regular expression for ``fullmatch``, one named group per path
        parameter; a parameter matches one path segment (``[^/]+``), as in FastAPI's router."""
        parts = _PARAMETER.split(self.template)  # literal, parameter, literal, ...
        return re.compile(
            "".join(
                f"(?P<{part}>[^/]+)" if i % 2 else re.escape(part) for i, part in enumerate(parts)
            )
        )


@dataclass(frozen=True)
class InferenceRoute:
    """One inference endpoint (POST), at ``{prefix}/models/{name}/{action}`` for the model's
    default version and ``{prefix}/models/{name}/versions/{version}/{action}`` for a given one.

    ``handler`` serves it; the other fields only document it.
    """

    prefix: str
    action: str
    handler: Handler
    summary: str
    tags: tuple[str, ...]
    body: type[BaseModel]
    """The request body, decoded by ``handler`` and documented in components (``app.py``)."""
    response_model: type[BaseModel]
    responses: Mapping[int | str, dict[str, Any]]

    @property
    def paths(self) -> tuple[RoutePath, RoutePath]:
        return (
            RoutePath(
                f"{self.prefix}/models/{{name}}/{self.action}",
                self.action,
                f"{self.summary} (default version)",
            ),
            RoutePath(
                f"{self.prefix}/models/{{name}}/versions/{{version}}/{self.action}",
                f"{self.action}_version",
                self.summary,
            ),
        )


def install_inference_routes(app: FastAPI, routes: Iterable[InferenceRoute]) -> None:
    """Add each route's two paths to FastAPI's router, documented."""
    for route in routes:
        for path in route.paths:
            app.add_api_route(
                path.template,
                _endpoint(route.handler, path.versioned),
                methods=["POST"],
                name=path.operation,
                summary=path.summary,
                tags=list(route.tags),
                response_model=route.response_model,
                responses=dict(route.responses),
                openapi_extra=body_schema(route.body),
            )


def _endpoint(handler: Handler, versioned: bool) -> Callable[..., Awaitable[Response]]:
    """A FastAPI endpoint calling ``handler``: its signature declares the path parameters (for
    the router and the documentation) and nothing else, since the handler reads the body."""

    async def default_version(request: Request, name: Name) -> Response:
        return await handler(request, name, None)

    async def given_version(request: Request, name: Name, version: Version) -> Response:
        return await handler(request, name, version)

    return given_version if versioned else default_version
