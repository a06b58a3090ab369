"""Every error answer is ``{"error": {"code", "message", "details"}}``, rendered here once;
on the Open Inference Protocol's ``/v2`` paths it is ``{"error": "message"}``, as that protocol
says, and a request the server cannot take is a 400 there (422 elsewhere)."""

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


def error_response(error: MemoserveError, *, v2: bool = False) -> Response:
    """The answer to ``error``, with its status (in the V2 protocol's shape when ``v2``)."""
    if v2:
        status = 400 if isinstance(error, InvalidRequest) else error.status_code
        response = json_response({"error": error.message}, status)
    else:
        body = error_body(error.code, error.message, error.details)
        response = json_response(body, error.status_code)
    response.headers.update(error.headers)
    return response


def _is_v2(request: Request) -> bool:
    path: str = request.scope.get("path", "")
    return path == "/v2" or path.startswith("/v2/")


async def _memoserve_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MemoserveError)
    return error_response(exc, v2=_is_v2(request))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
    error = InvalidRequest("the request is not valid", {"errors": errors})
    return error_response(error, v2=_is_v2(request))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _is_v2(request):
        return json_response({"error": str(exc.detail)}, exc.status_code)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return json_response(error_body(code, str(exc.detail)), exc.status_code)


Handler = Callable[[Request, Any], Coroutine[Any, Any, Response]]

HANDLERS: dict[int | type[Exception], Handler] = {
    MemoserveError: _memoserve_error,
    RequestValidationError: _validation_error,
    HTTPException: _http_error,
}
"""Exception handlers of the app, by the exception they render."""
