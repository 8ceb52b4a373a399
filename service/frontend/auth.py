"""Optional API key: ``Authorization: Bearer <key>`` on inference and metadata endpoints.

Off unless a key is set (``--api-key`` / ``LSTM_SERVING_API_KEY``). Health and metrics stay
open by default, so orchestrators and Prometheus need no secret; each can be closed separately.
The console's page (``/``) and the package's static files (``/static/...``) are always open: they
hold no data, and the page must load before it can ask for the key.
The comparison takes constant time, and the key never reaches a log or an error message.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from service.errors import ServiceError
from service.frontend.api.responses import error_response

HEALTH_PATHS = ("/v2/health/live", "/v2/health/ready")
METRICS_PATHS = ("/metrics",)
CONSOLE_PATHS = ("/",)
STATIC_PREFIX = "/static/"


class Unauthorized(ServiceError):
    status_code = 401
    error_type = "unauthorized"


class ApiKeyMiddleware:
    """A pure ASGI middleware (no ``BaseHTTPMiddleware``: it would break streaming and
    disconnect detection)."""

    def __init__(self, app: ASGIApp, api_key: str, protect_health: bool, protect_metrics: bool):
        self.app = app
        self._key = api_key.encode()
        open_paths: list[str] = list(CONSOLE_PATHS)
        if not protect_health:
            open_paths += HEALTH_PATHS
        if not protect_metrics:
            open_paths += METRICS_PATHS
        self._open = frozenset(open_paths)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    return hmac.compare_digest(token.strip(), self._key)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or path in self._open
            or path.startswith(STATIC_PREFIX)
            or self._authorized(scope)
        ):
            await self.app(scope, receive, send)
            return
        error = Unauthorized(
            "missing or wrong API key: send 'Authorization: Bearer <key>'",
            {"WWW-Authenticate": "Bearer"},
        )
        await error_response(error)(scope, receive, send)
