"""The chat page at ``/``: static files shipped inside the package."""

from __future__ import annotations

from pathlib import Path

from litestar import Response, Router, get
from litestar.static_files import create_static_files_router

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


@get("/", include_in_schema=False)
async def index() -> Response[bytes]:
    body = (STATIC_DIR / "index.html").read_bytes()
    return Response(body, media_type="text/html; charset=utf-8", headers=_NO_STORE)


_NO_STORE = {"Cache-Control": "no-cache"}


def page_router() -> Router:
    static = create_static_files_router(
        path="/static", directories=[STATIC_DIR], include_in_schema=False
    )
    return Router(path="/", route_handlers=[index, static])
