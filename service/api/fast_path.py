"""The prediction routes without FastAPI's inner stack: a cache hit's hot path.

A hit is a Redis round trip and a few microseconds of our own work; FastAPI's exception and
exit-stack middlewares, the router's matching over every route and the endpoint wrapper cost
about a quarter of a hit's CPU (py-spy under wrk). ``POST /invocations`` and
``POST /v1/models/{name}:predict`` go straight from here to their handlers in
``service.api.inference``; everything else, and those paths with another method, goes on to
FastAPI. The routes stay registered, so OpenAPI documents them, and this sits inside the
observability and tracing middlewares, which see the matched route as the router would set it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from service.api import inference
from service.api.errors import error_response
from service.errors import MemoserveError

KSERVE_PREFIX, KSERVE_SUFFIX = "/v1/models/", ":predict"


class PredictionFastPath:
    """Dispatch the two prediction routes directly; pass everything else to ``app``."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self._routes = routes
        self._invocations: BaseRoute | None = None
        self._kserve: BaseRoute | None = None

    def _route(self, template: str) -> BaseRoute:
        for route in self._routes:
            if isinstance(route, Route) and route.path == template:
                return route
        raise LookupError(f"no route {template} to take the fast path for")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        root: str = scope.get("root_path", "")
        if root and path.startswith(root):
            path = path[len(root) :]
        handler: Callable[[Request], Awaitable[Response]]
        if path == "/invocations":
            if self._invocations is None:
                self._invocations = self._route("/invocations")
            scope["route"] = self._invocations
            handler = inference.invocations
        elif path.startswith(KSERVE_PREFIX) and path.endswith(KSERVE_SUFFIX):
            name = path[len(KSERVE_PREFIX) : -len(KSERVE_SUFFIX)]
            if not name or "/" in name:
                await self.app(scope, receive, send)
                return
            if self._kserve is None:
                self._kserve = self._route("/v1/models/{name}:predict")
            scope["route"] = self._kserve
            scope["path_params"] = {"name": name}

            async def handler(request: Request, name: str = name) -> Response:
                return await inference.kserve_predict(name, request)
        else:
            await self.app(scope, receive, send)
            return
        try:
            response = await handler(Request(scope, receive, send))
        except MemoserveError as exc:
            response = error_response(exc)
        await response(scope, receive, send)
