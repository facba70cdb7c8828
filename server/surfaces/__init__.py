"""The APIs Parley speaks. Each surface is a package: routers, wire Structs, error envelope,
authentication and stream renderer; the engine behind them is the same.

The app factory builds the enabled surfaces and lets :class:`Surfaces` pick, by path, whose
envelope an error is rendered in, Litestar's own errors included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, Router
from litestar.types import ExceptionHandlersMap

from server.openapi import Contract, Operations, handlers_of
from server.surfaces.errors import Problem, problem_of

Renderer = Callable[[Request[Any, Any, Any], Problem], Response[Any]]


@dataclass(frozen=True)
class Surface:
    """``prefixes``: the paths it owns, so Litestar's own errors there get its envelope;
    ``contract``: that envelope and its credentials, for the OpenAPI document."""

    name: str
    prefixes: tuple[str, ...]
    routers: Sequence[Router]
    render: Renderer
    contract: Contract


class Surfaces:
    """The enabled surfaces; ``fallback`` renders errors on paths that belong to none."""

    def __init__(self, surfaces: Sequence[Surface], fallback: Renderer) -> None:
        owned = [(prefix, s) for s in surfaces for prefix in s.prefixes]
        owned.sort(key=lambda pair: len(pair[0]), reverse=True)
        self._by_prefix = [(prefix, s.render) for prefix, s in owned]
        self._owners = [(prefix, s.name, s.contract) for prefix, s in owned]
        self._fallback = fallback
        self.routers = [router for surface in surfaces for router in surface.routers]

    def renderer(self, path: str) -> Renderer:
        for prefix, render in self._by_prefix:
            if path == prefix or path.startswith(prefix + "/"):
                return render
        return self._fallback

    def handle(self, request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        return self.renderer(request.url.path)(request, problem_of(request, exc))

    def operations(self, routes: Iterable[Any]) -> Operations:
        return Operations(self._owners, handlers_of(routes))

    def exception_handlers(self) -> ExceptionHandlersMap:
        return {Exception: self.handle}
