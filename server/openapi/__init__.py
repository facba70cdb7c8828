"""The OpenAPI document at ``/schema``: Litestar's, completed with each surface's contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin, ScalarRenderPlugin

from server.openapi.contract import BEARER, Contract, api_key_header
from server.openapi.document import Document, Operations, complete
from server.openapi.handlers import handlers_of

__all__ = ["BEARER", "Contract", "Operations", "api_key_header", "handlers_of", "render_plugins"]


class Completed(OpenAPIRenderPlugin):
    """A render plugin that shows the completed document instead of Litestar's own."""

    def __init__(self, inner: OpenAPIRenderPlugin, finish: Callable[[Document], Document]) -> None:
        super().__init__(path=inner.paths, media_type=inner.media_type)
        self._inner = inner
        self._finish = finish

    def render(self, request: Request[Any, Any, Any], openapi_schema: Document) -> bytes:
        return self._inner.render(request, self._finish(openapi_schema))


def render_plugins(operations: Callable[[], Operations]) -> list[OpenAPIRenderPlugin]:
    """The schema page and ``openapi.json``, both of the completed document.

    ``operations`` is called at the first request, when every route is known; the document
    is completed once.
    """
    cache: dict[int, Document] = {}

    def finish(document: Document) -> Document:
        if id(document) not in cache:
            cache.clear()
            cache[id(document)] = complete(document, operations())
        return cache[id(document)]

    return [Completed(ScalarRenderPlugin(), finish), Completed(JsonRenderPlugin(), finish)]
