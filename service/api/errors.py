"""Every error answer is ``{"error": {"code", "message", "details"}}``, rendered here once."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from service.api.responses import json_response
from service.errors import InvalidRequest, MemoserveError

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON body of an error answer."""
    return {"error": {"code": code, "message": message, "details": details or {}}}


def error_response(error: MemoserveError) -> Response:
    """The answer to ``error``, with its status."""
    body = error_body(error.code, error.message, error.details)
    response = json_response(body, error.status_code)
    response.headers.update(error.headers)
    return response


async def _memoserve_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MemoserveError)
    return error_response(exc)


async def _validation_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
    return error_response(InvalidRequest("the request is not valid", {"errors": errors}))


async def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return json_response(error_body(code, str(exc.detail)), exc.status_code)


Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]

HANDLERS: dict[int | type[Exception], Handler] = {
    MemoserveError: _memoserve_error,
    RequestValidationError: _validation_error,
    HTTPException: _http_error,
}
"""Exception handlers of the app, by the exception they render."""
