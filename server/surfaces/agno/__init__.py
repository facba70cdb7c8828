"""Agno AgentOS at the root, where ``agno.client.AgentOSClient`` sends it: ``/sessions`` and
``/agents``."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import Provide
from litestar.exceptions import NotAuthorizedException

from server.auth import Authenticator, bearer
from server.openapi import BEARER, Contract
from server.surfaces import Surface
from server.surfaces.agno.agents import agents_router
from server.surfaces.agno.errors import ErrorBody, ValidationBody, render
from server.surfaces.agno.runs import runs_router
from server.surfaces.agno.sessions import sessions_router
from server.surfaces.errors import SurfaceError

PREFIXES = ("/sessions", "/agents")


def surface(auth: Authenticator) -> Surface:
    async def principal(request: Request[Any, Any, Any]) -> str:
        """AgentOS's words: no Bearer header, or a key it does not know."""
        key = bearer(request)
        if auth.enabled and not key:
            raise _unauthorized("Authorization header required")
        try:
            api_key = auth.identify(request, key)
        except NotAuthorizedException:
            raise _unauthorized("Invalid authentication token") from None
        return await auth.admitted(request, api_key)

    dependencies = {"principal": Provide(principal)}
    routers = [
        sessions_router(dependencies),
        runs_router(dependencies),
        agents_router(dependencies),
    ]
    contract = Contract(ErrorBody, bodies={422: ValidationBody}, security=BEARER)
    return Surface("agno", PREFIXES, routers, render, contract)


def _unauthorized(message: str) -> SurfaceError:
    return SurfaceError("unauthorized", "unauthorized", message, {})
