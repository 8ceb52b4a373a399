"""How responses are written: JSON through the one orjson encoder, and every error rendered by
one function, whichever layer caught it (FastAPI's handlers, the fast path, the API key
middleware)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from service.errors import ServiceError
from service.frontend.api.validation import encode_json

log = logging.getLogger(__name__)


def json_response(
    content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response encoded by orjson (numpy arrays allowed)."""
    body = encode_json(content)
    return Response(body, status_code, dict(headers or {}), media_type="application/json")


def error_response(error: ServiceError) -> Response:
    """``{"error": message, "error_type": ...}`` with the error's status and headers
    (``Retry-After``, ``WWW-Authenticate``, ...)."""
    body = {"error": error.message, "error_type": error.error_type}
    return json_response(body, error.status_code, error.headers)


def unexpected_error_response(error: BaseException) -> Response:
    """500 for an exception that is not a ``ServiceError``: its trace is logged, and the client
    sees no internals (its message may hold paths or data)."""
    log.error("unexpected error", exc_info=error)
    return error_response(ServiceError("internal server error"))
