"""Request headers within bounds, or 431 before any handler runs.

uvicorn's httptools parser takes headers of any size, so one client could make a worker hold
megabytes per request. This runs on every request, streams included, so it is one pass over
``scope["headers"]`` summing lengths; a refusal is rendered by the surface whose path was hit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Receive, Scope, Send

from server.surfaces import Renderer
from server.surfaces.errors import Problem

Middleware = Callable[[ASGIApp], ASGIApp]


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    """``line``: most bytes of one header, name and value; ``total``: of all of them."""

    line: int
    total: int

    def breach(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        """What is too large about ``headers``, or None when they are within bounds."""
        total = 0
        for name, value in headers:
            size = len(name) + len(value)
            if size > self.line:
                shown = name[:64].decode("latin-1")
                return (
                    f"the {shown} header is {size} bytes; one header may have at most {self.line}"
                )
            total += size
        if total > self.total:
            return f"the request headers total {total} bytes; at most {self.total} are accepted"
        return None


def header_limit_middleware(
    limits: HeaderLimits, renderer: Callable[[str], Renderer]
) -> Middleware:
    """``renderer``: the error renderer of the surface a path belongs to."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == ScopeType.HTTP:
                breach = limits.breach(scope["headers"])
                if breach is not None:
                    await _refuse(scope, receive, send, renderer, breach)
                    return
            await app(scope, receive, send)

        return middleware

    return wrap


async def _refuse(
    scope: Scope, receive: Receive, send: Send, renderer: Callable[[str], Renderer], why: str
) -> None:
    request: Request[Any, Any, Any] = Request(scope)
    problem = Problem("headers_too_large", "headers_too_large", why)
    response = renderer(request.url.path)(request, problem)
    await response.to_asgi_response(app=None, request=request)(scope, receive, send)
