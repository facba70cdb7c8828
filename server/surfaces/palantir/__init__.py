"""Palantir AIP Agents v2 under ``/api/v2/aipAgents``, where ``foundry_sdk`` sends it."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import Provide

from server.auth import Authenticator, bearer
from server.openapi import BEARER, Contract
from server.surfaces import Surface
from server.surfaces.palantir.agents import agents_router
from server.surfaces.palantir.errors import ErrorBody, render
from server.surfaces.palantir.sessions import sessions_router

PREFIXES = ("/api/v2/aipAgents",)


def surface(auth: Authenticator) -> Surface:
    async def principal(request: Request[Any, Any, Any]) -> str:
        return await auth.admit(request, bearer(request))

    dependencies = {"principal": Provide(principal)}
    routers = [sessions_router(dependencies), agents_router(dependencies)]
    contract = Contract(ErrorBody, security=BEARER)
    return Surface("palantir", PREFIXES, routers, render, contract)
