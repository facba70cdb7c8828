"""Sonaops's open API under ``/v1/chat`` and ``/v1/agent``: the envelope on every answer,
signed requests for keys with a secret, and SSE replies that resume with ``Last-Event-ID``.

The native surface owns ``/v1``; these longer prefixes win, so Litestar's own errors on
Sonaops's paths come out in Sonaops's envelope.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import Provide

from server.auth import Authenticator
from server.openapi import BEARER, Contract
from server.surfaces import Surface
from server.surfaces.sonaops.agents import agents_router
from server.surfaces.sonaops.callers import identify, verify
from server.surfaces.sonaops.chat import chat_router
from server.surfaces.sonaops.envelope import Envelope
from server.surfaces.sonaops.errors import render

PREFIXES = ("/v1/chat", "/v1/agent")
# Sonaops answers most errors with HTTP 200 and the envelope (the handlers' own schema); only
# these come with their HTTP status.
CONTRACT = Contract(
    Envelope[None], security=BEARER, common=(401, 431, 503), path_errors=(), body_errors=(413,)
)


def surface(auth: Authenticator) -> Surface:
    async def principal(request: Request[Any, Any, Any]) -> str:
        """The key, then its signature and request id, then its rate limit."""
        api_key = identify(auth, request)
        await verify(request, api_key, auth.nonces)
        return await auth.admitted(request, api_key)

    dependencies = {"principal": Provide(principal)}
    routers = [chat_router(dependencies), agents_router(dependencies)]
    return Surface("sonaops", PREFIXES, routers, render, CONTRACT)
