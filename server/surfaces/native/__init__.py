"""The native API under ``/v1``: the template every other surface follows."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import Provide

from server.auth import Authenticator, bearer
from server.openapi import BEARER, Contract
from server.surfaces import Surface
from server.surfaces.native.agents import agents_router
from server.surfaces.native.errors import ErrorBody, render
from server.surfaces.native.keys import keys_router

__all__ = ["PREFIXES", "render", "surface"]
from server.surfaces.native.sessions import sessions_router
from server.surfaces.native.stream_tokens import (
    refuse_keys_in_query,
    stream_caller,
    stream_tokens_router,
)

PREFIXES = ("/v1",)


def surface(auth: Authenticator) -> Surface:
    def key_of(request: Request[Any, Any, Any]) -> str | None:
        # EventSource cannot send headers: it passes a stream token (GET …/stream?token=).
        refuse_keys_in_query(request, auth.keyring)
        return bearer(request)

    async def principal(request: Request[Any, Any, Any]) -> str:
        return await auth.admit(request, key_of(request))

    async def admin(request: Request[Any, Any, Any]) -> str:
        return await auth.admin(request, key_of(request))

    dependencies = {"principal": Provide(principal)}
    admins = {"admin": Provide(admin)}
    streams = {"stream_principal": Provide(stream_caller(auth, principal))}
    routers = [
        sessions_router({**dependencies, **streams}),
        stream_tokens_router(dependencies),
        agents_router({**dependencies, **admins}),
        keys_router(admins, auth.keyring, auth.quotas),
    ]
    contract = Contract(ErrorBody, security=BEARER)
    return Surface("native", PREFIXES, routers, render, contract)
