"""Liveness and readiness probes."""

from __future__ import annotations

import msgspec
from litestar import Response, get

from streams.service import ConversationService


class Health(msgspec.Struct):
    status: str


@get("/healthz", summary="The process is alive", include_in_schema=True)
async def healthz() -> Health:
    return Health("ok")


@get("/readyz", summary="Redis is reachable and the event hub connected")
async def readyz(service: ConversationService) -> Response[Health]:
    if await service.ready():
        return Response(Health("ready"))
    return Response(Health("unready"), status_code=503, headers={"Retry-After": "2"})
