"""One exception hierarchy; each class carries its HTTP status. One handler renders them all as
``{"error": message, "error_type": ...}`` (the KServe V2 error body plus a stable type)."""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: an error whose message is safe to show to the client."""

    status_code = 500
    error_type = "internal"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}


# The classes below repeat one shape on purpose: each names a status and a stable type, and
# nothing more, so the handler renders them all alike.
class MalformedRequest(ServiceError):
    """The body cannot be parsed: bad JSON, lying binary headers, wrong content type."""

    status_code = 400
    error_type = "malformed_request"


class ModelNotFound(ServiceError):
    status_code = 404
    error_type = "model_not_found"


class StreamNotFound(ServiceError):
    """A chunk of a stream (V2 sequence extension) that is not live: it ended, expired, or
    never started."""

    status_code = 404
    error_type = "stream_not_found"


class PayloadTooLarge(ServiceError):
    status_code = 413
    error_type = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    status_code = 415
    error_type = "unsupported_media_type"


class InvalidInput(ServiceError):
    """The body parses but does not describe valid input for the model."""

    status_code = 422
    error_type = "invalid_input"


class ResponseTooLarge(InvalidInput):
    """The request asks for a larger answer than ``max_response_bytes`` (estimated before any
    compute from the sequences, their lengths and the outputs asked for)."""

    error_type = "response_too_large"


class Overloaded(ServiceError):
    """The model's queue is full; the client should retry later."""

    status_code = 429
    error_type = "overloaded"


class Unavailable(ServiceError):
    """The model cannot serve now: not loaded, its batcher failed, or the server is draining."""

    status_code = 503
    error_type = "unavailable"


class ClientClosedRequest(ServiceError):
    """The client went away; nobody reads the answer (nginx's 499, for the metrics)."""

    status_code = 499
    error_type = "client_closed_request"


class DeadlineExceeded(ServiceError):
    status_code = 504
    error_type = "deadline_exceeded"


class BatchFailed(ServiceError):
    """The runtime failed on the batch holding this request; other batches are unaffected."""

    status_code = 500
    error_type = "inference_failed"


class RoutingError(ServiceError):
    """What the router refuses before any route runs (no such path 404, wrong method 405), with
    the status the router chose: the one class whose status is per instance, so that Starlette's
    ``HTTPException`` renders like every other error."""

    error_type = "http"

    def __init__(
        self, status_code: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, headers)
        self.status_code = status_code
