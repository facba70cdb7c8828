"""Qoder's cloud sessions, and the same API where the official ``anthropic`` SDK sends its
managed-agents calls: environments, agents, sessions and their events.

One surface, two mounts with the same routes and ids: Qoder's ``/api/v1/cloud`` and
``/anthropic/v1``, so that ``anthropic.Anthropic(base_url="http://HOST:PORT/anthropic")``
works unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request, Router
from litestar.di import Provide
from litestar.exceptions import NotAuthorizedException
from litestar.types import Dependencies

from server.auth import Authenticator, bearer
from server.keyring import ApiKey
from server.openapi import BEARER, Contract, api_key_header
from server.surfaces import Surface
from server.surfaces.qoder.agents import agents_router
from server.surfaces.qoder.environments import environments_router
from server.surfaces.qoder.errors import ErrorBody, api_error, render
from server.surfaces.qoder.events import events_router
from server.surfaces.qoder.sessions import sessions_router
from server.surfaces.qoder.stream import stream_router

MOUNTS = ("/api/v1/cloud", "/anthropic/v1")
PREFIXES = MOUNTS

# Each module's router factory: (mount path, dependencies) -> Router.
ROUTERS: list[Callable[[str, Dependencies], Router]] = [
    environments_router,
    agents_router,
    sessions_router,
    events_router,
    stream_router,
]


def surface(auth: Authenticator) -> Surface:
    def identified(request: Request[Any, Any, Any]) -> ApiKey:
        """``Authorization: Bearer`` as the SDK sends it, or ``x-api-key`` as Anthropic's
        API takes it; ``anthropic-version`` and ``anthropic-beta`` are accepted, not needed."""
        key = bearer(request) or (request.headers.get("x-api-key") or "").strip() or None
        try:
            return auth.identify(request, key)
        except NotAuthorizedException:
            message = "invalid API key" if key else "missing API key: Authorization: Bearer <key>"
            raise api_error("authentication_error", message) from None

    async def principal(request: Request[Any, Any, Any]) -> str:
        return await auth.admitted(request, identified(request))

    async def admin(request: Request[Any, Any, Any]) -> str:
        """As ``principal``, for a key with the admin role (anyone, with authentication off):
        what changes every principal's sessions, as an agent does, needs one."""
        api_key = identified(request)
        if not auth.may_administer(api_key):
            raise api_error("permission_error", 'this needs an admin key (role = "admin")')
        return await auth.admitted(request, api_key)

    dependencies = {"principal": Provide(principal), "admin": Provide(admin)}
    routers = [make(mount, dependencies) for mount in MOUNTS for make in ROUTERS]
    contract = Contract(ErrorBody, security={**BEARER, **api_key_header("x-api-key")})
    return Surface("qoder", MOUNTS, routers, render, contract)
