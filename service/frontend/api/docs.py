"""What the OpenAPI documentation says about errors and about the bodies that routes decode
themselves; nothing here runs on a request."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    """Every error response: the KServe V2 error body plus a stable type."""

    error: str
    error_type: str


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the error statuses a route can answer."""
    return {code: {"model": ErrorBody} for code in codes}


INFERENCE_ERRORS = error_responses(400, 401, 404, 413, 422, 429, 500, 503, 504)
METADATA_ERRORS = error_responses(401, 404, 422, 503)


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON body that the route decodes itself (with orjson):
    the schema lives in components (``app.py`` registers it)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    }
