"""OpenViking's session API under ``/api/v1/sessions``, as v0.3.24 of its server answers it."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import Provide
from litestar.exceptions import NotAuthorizedException

from server.auth import Authenticator, bearer
from server.openapi import BEARER, Contract, api_key_header
from server.surfaces import Surface
from server.surfaces.errors import SurfaceError
from server.surfaces.openviking.errors import BareErrorEnvelope, ErrorEnvelope, render
from server.surfaces.openviking.sessions import sessions_router

PREFIX = "/api/v1"
PREFIXES = (PREFIX,)


def surface(auth: Authenticator) -> Surface:
    async def principal(request: Request[Any, Any, Any]) -> str:
        """OpenViking's key: ``X-API-Key`` wins over ``Authorization: Bearer``."""
        key = (request.headers.get("x-api-key") or "").strip() or bearer(request)
        try:
            api_key = auth.identify(request, key)
        except NotAuthorizedException:
            message = "Invalid API Key" if key else "Missing API Key when resolving identity."
            raise SurfaceError("unauthorized", "UNAUTHENTICATED", message, {}) from None
        return await auth.admitted(request, api_key)

    dependencies = {"principal": Provide(principal)}
    routers = [sessions_router(PREFIX, dependencies)]
    security = {**api_key_header("X-API-Key"), **BEARER}
    contract = Contract((ErrorEnvelope, BareErrorEnvelope), security=security)
    return Surface("openviking", PREFIXES, routers, render, contract)
