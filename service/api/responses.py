"""How responses are written: JSON through the one orjson encoder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from service.api.validation import encode_json


def json_response(
    content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON response encoded by orjson (numpy arrays allowed)."""
    body = encode_json(content)
    return Response(body, status_code, dict(headers or {}), media_type="application/json")
