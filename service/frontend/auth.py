"""Optional API key: ``Authorization: Bearer <key>`` on inference and metadata endpoints.

Off unless a key is set (``--api-key`` / ``LSTM_SERVING_API_KEY``). Health and metrics stay
open by default, so orchestrators and Prometheus need no secret; each can be closed separately.
The documentation (``/docs``, ``/redoc``, ``/openapi.json``) is open by default too: it describes
the API's shape and names no model, and a browser opening ``/docs`` cannot send a header (Swagger
UI's "Authorize" sends the key with each "Try it out"); ``--api-key-protects-docs`` closes it.
The console's page (``/``) and the package's static files (``/static/...``) are always open: they
hold no data, and the page must load before it can ask for the key.

``AccessPolicy.needs_key`` is the one answer to "does this path need the key": the middleware
refuses by it, and the OpenAPI schema marks by it the operations that need the key.
The comparison takes constant time, and the key never reaches a log or an error message.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ServiceError
from service.frontend.api.responses import error_response
from service.frontend.console import DOCS_PATHS, PAGE_PATH, STATIC_PREFIX
from service.settings import Settings

HEALTH_PATHS = ("/v2/health/live", "/v2/health/ready")
METRICS_PATHS = ("/metrics",)


@dataclass(frozen=True)
class AccessPolicy:
    """Which paths need the key when one is set (``from_settings`` gives None when none is)."""

    open_paths: frozenset[str]
    """Open whatever the request carries; everything else but ``/static/...`` needs the key."""

    @classmethod
    def from_settings(cls, settings: Settings, openapi_url: str | None) -> AccessPolicy | None:
        """The policy of ``settings``, or None without a key; ``openapi_url`` is the app's (with
        ``DOCS_PATHS``, the documentation that ``api_key_protects_docs`` closes)."""
        if settings.api_key is None:
            return None
        open_paths: list[str] = [PAGE_PATH]
        if not settings.api_key_protects_health:
            open_paths += HEALTH_PATHS
        if not settings.api_key_protects_metrics:
            open_paths += METRICS_PATHS
        if not settings.api_key_protects_docs:
            open_paths += [*DOCS_PATHS, *([openapi_url] if openapi_url else [])]
        return cls(frozenset(open_paths))

    def needs_key(self, path: str) -> bool:
        """Whether a request for ``path`` (or an OpenAPI path template) needs the key."""
        return path not in self.open_paths and not path.startswith(STATIC_PREFIX)


class Unauthorized(ServiceError):
    status_code = 401
    error_type = "unauthorized"


class ApiKeyMiddleware:
    """A pure ASGI middleware (no ``BaseHTTPMiddleware``: it would break streaming and
    disconnect detection)."""

    def __init__(self, app: ASGIApp, api_key: str, policy: AccessPolicy):
        self.app = app
        self._key = api_key.encode()
        self._policy = policy

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    return hmac.compare_digest(token.strip(), self._key)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not self._policy.needs_key(path) or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        error = Unauthorized(
            "missing or wrong API key: send 'Authorization: Bearer <key>'",
            {"WWW-Authenticate": "Bearer"},
        )
        await error_response(error)(scope, receive, send)
