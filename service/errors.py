"""One error base class carrying its HTTP status; ``service.api.errors`` renders it."""

from __future__ import annotations

from typing import Any, ClassVar


class MemoserveError(Exception):
    """Base of every error a client may see; subclasses fix the status and code."""

    status_code = 500
    code = "internal_error"
    headers: ClassVar[dict[str, str]] = {}

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidRequest(MemoserveError):
    """The request does not have the form a route takes (FastAPI's validation)."""

    status_code = 422
    code = "invalid_request"


class InvalidInput(InvalidRequest):
    """The request body cannot be turned into rows the model accepts."""

    code = "invalid_input"


class PayloadTooLarge(MemoserveError):
    """Body bytes or row count over the configured limit."""

    status_code = 413
    code = "payload_too_large"


class RequestTimeout(MemoserveError):
    """The request did not arrive in time."""

    status_code = 408
    code = "request_timeout"


class ModelNotFound(MemoserveError):
    """No model of that name is served here."""

    status_code = 404
    code = "model_not_found"


class NotReady(MemoserveError):
    """No model is loaded yet."""

    status_code = 503
    code = "not_ready"


class Overloaded(MemoserveError):
    """Too many misses wait for the model, or a model call is stuck: come back shortly."""

    status_code = 503
    code = "overloaded"
    headers: ClassVar[dict[str, str]] = {"Retry-After": "1"}


class ModelTimeout(MemoserveError):
    """The model call did not return within its deadline."""

    status_code = 504
    code = "model_timeout"


class Unauthorized(MemoserveError):
    """A webhook delivery whose signature does not verify."""

    status_code = 401
    code = "unauthorized"


class RegistryUnavailable(MemoserveError):
    """The model registry could not be reached for something only it can answer."""

    status_code = 503
    code = "registry_unavailable"


class CacheUnavailable(Exception):
    """The shared cache could not answer; callers treat it as a miss (fail open)."""
