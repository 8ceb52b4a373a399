"""The app factory: ``create_app(settings)`` builds everything and keeps it on ``app.state``.

Start-up (lifespan): load every model in the repository, warm each up, start one batcher per
model version — only then does readiness say yes. Shut-down: uvicorn stops accepting and waits
for the requests in flight (``timeout_graceful_shutdown`` = ``drain_timeout_s``); then the
batchers finish what they hold and stop.

Run with ``python -m service`` or ``uvicorn service.frontend.app:create_app --factory``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from service import __version__
from service.errors import InvalidInput, RoutingError, ServiceError
from service.frontend.api import v1, v2
from service.frontend.api.bodies import BodyBudget
from service.frontend.api.context import AppContext
from service.frontend.api.docs import ErrorBody
from service.frontend.api.fast_path import InferenceFastPath
from service.frontend.api.offload import CpuOffload
from service.frontend.api.responses import error_response, unexpected_error_response
from service.frontend.api.routes import install_inference_routes
from service.frontend.auth import AccessPolicy, ApiKeyMiddleware
from service.frontend.console import install_console
from service.handoff.client import EngineClient
from service.handoff.remote import connect_engines
from service.logs import configure_logging
from service.metrics import ServiceMetrics
from service.registry import ModelRegistry
from service.settings import Settings

if TYPE_CHECKING:
    from service.engine.loading import RuntimeFactory

log = logging.getLogger(__name__)

BATCHER_CLOSE_S = 5.0

INFERENCE_ROUTES = (v1.PREDICT, v2.INFER)
"""The route table: FastAPI's routes (and their documentation) and the fast path's matchers
are both built from it."""


def install_error_handlers(app: FastAPI) -> None:
    """Every error FastAPI's router sees, rendered by ``error_response`` (the fast path and the
    API key middleware render theirs with it too)."""

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, error: ServiceError) -> Response:
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in error.errors()
        )
        return error_response(InvalidInput(problems or "invalid request"))

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> Response:
        headers = dict(error.headers) if error.headers else None
        return error_response(RoutingError(error.status_code, str(error.detail), headers))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> Response:
        return unexpected_error_response(error)


BEARER = "bearer"
"""The name of the API key's security scheme in the OpenAPI schema."""
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def install_openapi(
    app: FastAPI, body_models: list[type[BaseModel]], policy: AccessPolicy | None
) -> None:
    """The OpenAPI schema, plus the request bodies that routes decode themselves (orjson, not
    pydantic, so numbers go straight into numpy) registered as components. With an API key
    (``policy``), a bearer security scheme, required by each operation that the middleware
    refuses without the key: Swagger UI then offers "Authorize" and sends the key with it."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in body_models:
                body = model.model_json_schema(
                    by_alias=True, ref_template="#/components/schemas/{model}"
                )
                for name, definition in body.pop("$defs", {}).items():
                    components.setdefault(name, definition)
                components[model.__name__] = body
            if policy is not None:
                require_the_key(schema, policy)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def require_the_key(schema: dict[str, Any], policy: AccessPolicy) -> None:
    """Declare the bearer scheme in ``schema`` and require it where ``policy`` needs the key."""
    schema["components"]["securitySchemes"] = {BEARER: {"type": "http", "scheme": "bearer"}}
    for path, item in schema["paths"].items():
        if policy.needs_key(path):
            for method, operation in item.items():
                if method in HTTP_METHODS:
                    operation["security"] = [{BEARER: []}]


def create_app(
    settings: Settings | None = None, runtime_factory: RuntimeFactory | None = None
) -> FastAPI:
    """Build the service: an HTTP frontend of the engines at ``settings.engine_addresses``, or,
    with none, one that runs the models itself (``runtime_factory`` makes one runtime per model
    file: ONNX Runtime's by default, fakes in tests)."""
    settings = settings or Settings()
    metrics = ServiceMetrics()

    async def load() -> tuple[ModelRegistry, list[EngineClient]]:
        if settings.engine_addresses:
            return await connect_engines(settings)
        # Imported here: a frontend of separate engines never loads ONNX Runtime.
        from service.engine.loading import load_registry, onnx_runtime_factory

        factory = runtime_factory or onnx_runtime_factory
        return await load_registry(settings, metrics, factory), []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry, engines = await load()
        # Models that loaded can serve; with engines, "loaded" is what they described: an
        # engine restarting just now makes this frontend answer 503 for a moment, not fail.
        loaded = [m for m in registry.all() if (m.runtime is not None if engines else m.ready)]
        if not loaded:
            await registry.close(0)
            for engine in engines:
                await engine.close()
            errors = "; ".join(f"{m.name}/{m.version}: {m.error}" for m in registry.all())
            raise RuntimeError(
                f"no model can serve from {settings.model_repository}: {errors or 'none found'}"
            )
        offload = CpuOffload(
            settings.codec_processes, settings.codec_offload_min_bytes, settings.retry_after_s
        )
        bodies = BodyBudget(settings.max_buffered_body_bytes, settings.retry_after_s)
        app.state.context = ctx = AppContext(settings, registry, metrics, offload, bodies)
        log.info(
            "ready" if registry.ready else "started, but not every model is ready",
            extra={
                "models": [f"{m.name}/{m.version}" for m in registry.all()],
                "ready": registry.ready,
            },
        )
        try:
            yield
        finally:
            # uvicorn has already waited (up to drain_timeout_s) for the requests in flight, so
            # what the batchers still hold belongs to no waiting client: a short grace suffices.
            log.info("draining", extra={"drain_timeout_s": settings.drain_timeout_s})
            await registry.close(min(settings.drain_timeout_s, BATCHER_CLOSE_S))
            for engine in engines:
                await engine.close()
            ctx.offload.close()  # the codec processes: no request is left to decode for
            app.state.context = None
            log.info("stopped")

    app = FastAPI(
        title="lstm-serving",
        version=__version__,
        description="Batched variable-length LSTM inference on ONNX Runtime: a simple JSON API "
        "(/v1) and the Open Inference Protocol (/v2, KServe V2) with binary tensors.",
        lifespan=lifespan,
        # /docs and /redoc come from the console, with their assets served from this package
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = None
    install_error_handlers(app)
    app.add_middleware(InferenceFastPath, routes=INFERENCE_ROUTES)
    policy = AccessPolicy.from_settings(settings, app.openapi_url)
    if settings.api_key is not None and policy is not None:  # added last, so it runs first
        app.add_middleware(
            ApiKeyMiddleware, api_key=settings.api_key.get_secret_value(), policy=policy
        )
    app.include_router(v1.router)
    app.include_router(v2.router)
    install_inference_routes(app, INFERENCE_ROUTES)

    install_openapi(app, [route.body for route in INFERENCE_ROUTES], policy)
    install_console(app)

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=PlainTextResponse,
        responses={401: {"model": ErrorBody}},
    )
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return app


def create_app_from_env() -> FastAPI:
    """The factory each worker process runs (``python -m service --workers N``): settings from
    the environment, logging configured."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)
