"""A request id on every response (``X-Request-Id``), echoed from the client when sane.

The same wrapper adds the headers a handler or dependency asked for with
:func:`add_response_headers` (the ``RateLimit-*`` headers), to any answer, error or stream:
one wrapped ``send`` per request, whose every streamed chunk passes through it.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

_SANE = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_STATE_KEY = "parley_request_id"
_EXTRA_KEY = "parley_response_headers"


def add_response_headers(scope: Any, headers: dict[str, str]) -> None:
    """Have this request's answer carry ``headers``, whatever answers it."""
    extra = scope.setdefault("state", {}).setdefault(_EXTRA_KEY, [])
    extra += [(name.lower().encode(), value.encode()) for name, value in headers.items()]


def request_id_of(scope: Any) -> str:
    state = scope.setdefault("state", {})
    rid = state.get(_STATE_KEY)
    if rid is None:
        rid = state[_STATE_KEY] = uuid.uuid4().hex
    return str(rid)


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        state = scope.setdefault("state", {})
        state[_STATE_KEY] = (
            incoming.decode() if incoming and _SANE.match(incoming) else uuid.uuid4().hex
        )
        header = (b"x-request-id", state[_STATE_KEY].encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = state.get(_EXTRA_KEY, ())
                message["headers"] = [*message.get("headers", []), header, *extra]
            await send(message)

        await app(scope, receive, send_with_id)

    return middleware
