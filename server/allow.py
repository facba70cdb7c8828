"""OPTIONS answered with every method of the path, in ``Allow``.

Litestar answers OPTIONS from one route's handlers, and a path whose methods come from
several handlers (``GET`` and ``POST /v1/sessions``) is several routes: its ``Allow`` listed
only some of them, which clients and gateways read as the truth.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from litestar.enums import ScopeType
from litestar.routes import HTTPRoute
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

Middleware = Callable[[ASGIApp], ASGIApp]


def allow_middleware(routes: Callable[[], Iterable[Any]]) -> Middleware:
    """``routes``: the app's routes, read at the first OPTIONS, when all are known."""
    allowed: dict[str, bytes] = {}

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP or scope["method"] != "OPTIONS":
                await app(scope, receive, send)
                return
            if not allowed:
                allowed.update(methods_by_path(routes()))
            allow = allowed.get(scope.get("path_template", ""))
            if allow is None:
                await app(scope, receive, send)
                return
            await _no_content(send, allow)

        return middleware

    return wrap


async def _no_content(send: Send, allow: bytes) -> None:
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": 204,
        "headers": [(b"allow", allow)],
    }
    await send(start)
    end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": b"", "more_body": False}
    await send(end)


def methods_by_path(routes: Iterable[Any]) -> dict[str, bytes]:
    methods: dict[str, set[str]] = {}
    for route in routes:
        if isinstance(route, HTTPRoute):
            methods.setdefault(route.path_format, {"OPTIONS"}).update(route.methods)
    return {path: ", ".join(sorted(names)).encode() for path, names in methods.items()}
