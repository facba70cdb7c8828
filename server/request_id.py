"""A request id on every response (``X-Request-Id``), echoed from the client when sane."""

from __future__ import annotations

import re
import uuid
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

_SANE = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
_STATE_KEY = "parley_request_id"


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
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await app(scope, receive, send_with_id)

    return middleware
