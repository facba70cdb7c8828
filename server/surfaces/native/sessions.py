"""``/v1/sessions``: the native sessions API, camelCase JSON and SSE over the service."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from litestar import Router, delete, get, patch, post
from litestar.params import HeaderParameter, Parameter, QueryParameter
from litestar.response.base import ASGIResponse
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT
from litestar.types import ASGIApp, Dependencies

from server.metrics import MetricsExporter
from server.settings import Settings
from server.streaming import EVENT_STREAM, EVENT_STREAM_HEADERS, OpenStreams
from server.surfaces.cursors import KeysetCursorQuery, OffsetCursorQuery
from server.surfaces.native.frames import json_frame, native_frames
from server.surfaces.native.wire import (
    BatchDelete,
    BatchDeleteResult,
    CancelBody,
    ContinueBody,
    CreateSession,
    Exchange,
    Page,
    PatchSession,
    Session,
    Started,
    exchange_out,
    page_out,
    session_out,
)
from streams.errors import InvalidInput
from streams.service import ConversationService
from streams.types import NewSession, SessionPatch, SessionQuery, Turn

# A Redis stream id; 19 digits each keep it below 2**64 with a successor, which XRANGE needs.
STREAM_ID = r"[0-9]{1,19}-[0-9]{1,19}"
_STREAM_ID = re.compile(f"^{STREAM_ID}$")
_EVENT_ID = {"pattern": f"^({STREAM_ID})?$"}  # empty: none
LastEventIdHeader = Annotated[str, HeaderParameter(name="Last-Event-ID", schema_extra=_EVENT_ID)]
LastEventIdQuery = Annotated[str, QueryParameter(name="lastEventId", schema_extra=_EVENT_ID)]
Sid = Annotated[str, Parameter(description="The session's conversationId.")]


def _new_session(body: CreateSession) -> NewSession:
    return NewSession(
        agent_id=body.agent_id,
        agent_version=body.agent_version,
        title=body.title,
        metadata=body.metadata,
        refresh_interval_ms=body.refresh_interval_ms,
        user_id=body.user_id,
    )


@post(
    "/",
    summary="Create a session; no body: the defaults",
    opt={"statuses": (404, 409), "creates": {"conversation_id": "/conversationId"}},
)
async def create_session(
    service: ConversationService, principal: str, data: CreateSession | None = None
) -> Session:
    body = data if data is not None else CreateSession()
    return session_out(await service.create_session(principal, _new_session(body)))


@get("/", summary="List sessions")
async def list_sessions(
    service: ConversationService,
    principal: str,
    agent_id: Annotated[str | None, QueryParameter(name="agentId")] = None,
    status: Literal["idle", "running"] | None = None,
    q: Annotated[str | None, Parameter(max_length=200)] = None,
    user_id: Annotated[str | None, QueryParameter(name="userId")] = None,
    sort: Literal["createdAt", "updatedAt"] = "createdAt",
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
    cursor: KeysetCursorQuery = None,
) -> Page[Session]:
    query = SessionQuery(
        agent_id=agent_id,
        status=status,
        title_contains=q,
        user_id=user_id,
        sort="created" if sort == "createdAt" else "updated",
        descending=order == "desc",
        limit=limit,
        cursor=cursor,
    )
    return page_out(await service.list_sessions(principal, query), session_out)


@get("/{conversation_id:str}", summary="Get a session")
async def get_session(
    conversation_id: Sid,
    service: ConversationService,
    principal: str,
    auto_create: Annotated[bool, QueryParameter(name="autoCreate")] = False,
) -> Session:
    if auto_create:
        new = _new_session(CreateSession())
        return session_out(await service.get_or_create_session(principal, conversation_id, new))
    return session_out(await service.get_session(principal, conversation_id))


@patch("/{conversation_id:str}", summary="Change a session's title, metadata or interval")
async def update_session(
    conversation_id: Sid, data: PatchSession, service: ConversationService, principal: str
) -> Session:
    patch_ = SessionPatch(
        title=data.title, metadata=data.metadata, refresh_interval_ms=data.refresh_interval_ms
    )
    return session_out(await service.update_session(principal, conversation_id, patch_))


@delete("/{conversation_id:str}", summary="Delete a session and every key it has")
async def delete_session(
    conversation_id: Sid, service: ConversationService, principal: str
) -> None:
    if not await service.delete_session(principal, conversation_id):
        await service.get_session(principal, conversation_id)  # raises the 404


@post("/batchDelete", summary="Delete several sessions", status_code=HTTP_200_OK)
async def batch_delete(
    data: BatchDelete, service: ConversationService, principal: str
) -> BatchDeleteResult:
    deleted: list[str] = []
    missing: list[str] = []
    for sid in dict.fromkeys(data.conversation_ids):
        (deleted if await service.delete_session(principal, sid) else missing).append(sid)
    return BatchDeleteResult(deleted=deleted, not_found=missing)


@get("/{conversation_id:str}/exchanges", summary="The session's exchanges, oldest first")
async def list_exchanges(
    conversation_id: Sid,
    service: ConversationService,
    principal: str,
    limit: Annotated[int, Parameter(ge=1, le=100)] = 20,
    cursor: OffsetCursorQuery = None,
) -> Page[Exchange]:
    page = await service.list_exchanges(principal, conversation_id, limit, cursor)
    return page_out(page, exchange_out)


@post(
    "/{conversation_id:str}/blockingContinue",
    summary="Send a user turn; answer when the reply is done",
    status_code=HTTP_200_OK,
    opt={"statuses": (409,)},
)
async def blocking_continue(
    conversation_id: Sid, data: ContinueBody, service: ConversationService, principal: str
) -> Exchange:
    turn = Turn(text=data.user_input.text, exchange_id=data.message_id)
    return exchange_out(await service.blocking_continue(principal, conversation_id, turn))


@post(
    "/{conversation_id:str}/streamingContinue",
    summary="Send a user turn; stream the reply as SSE deltas",
    status_code=HTTP_200_OK,
    opt={"streams": EVENT_STREAM, "statuses": (409,)},
)
async def streaming_continue(
    conversation_id: Sid,
    data: ContinueBody,
    service: ConversationService,
    principal: str,
    settings: Settings,
    open_streams: OpenStreams,
    exporter: MetricsExporter,
) -> ASGIApp:
    turn = Turn(text=data.user_input.text, exchange_id=data.message_id)
    watch = await service.streaming_continue(principal, conversation_id, turn)
    opening = json_frame("started", Started(watch.xid, conversation_id))
    xid = watch.xid

    def on_close(finished: bool) -> None:
        if data.on_disconnect == "cancel" and not finished:
            service.cancel_local(conversation_id, xid)

    frames = native_frames(watch, settings.retry_ms, opening, exporter.metrics.delivered)
    return open_streams.respond(frames, headers=EVENT_STREAM_HEADERS, on_close=on_close)


@get(
    "/{conversation_id:str}/stream",
    summary="Join or resume the exchange in flight (SSE); 204 when none is",
    opt={"streams": EVENT_STREAM, "statuses": (204, 403)},
)
async def stream(
    conversation_id: Sid,
    service: ConversationService,
    stream_principal: str,
    settings: Settings,
    open_streams: OpenStreams,
    last_event_id: LastEventIdHeader = "",
    last_event_id_query: LastEventIdQuery = "",
) -> ASGIApp:
    after = last_event_id or last_event_id_query or None  # empty: from the start
    if after is not None and not _STREAM_ID.fullmatch(after):
        raise InvalidInput(
            "must be an event id this server sent, like 1700000000000-0", field="Last-Event-ID"
        )
    watch = await service.watch(stream_principal, conversation_id, after)
    if watch is None:
        return ASGIResponse(status_code=HTTP_204_NO_CONTENT)
    frames = native_frames(watch, settings.retry_ms)
    return open_streams.respond(frames, headers=EVENT_STREAM_HEADERS)


@post(
    "/{conversation_id:str}/cancel",
    summary="Cancel the running exchange",
    status_code=HTTP_200_OK,
    opt={"statuses": (409,)},
)
async def cancel(
    conversation_id: Sid,
    service: ConversationService,
    principal: str,
    data: CancelBody | None = None,
) -> Exchange:
    message_id = data.message_id if data else None
    return exchange_out(await service.cancel(principal, conversation_id, message_id))


def sessions_router(dependencies: Dependencies) -> Router:
    return Router(
        dependencies=dependencies,
        path="/v1/sessions",
        route_handlers=[
            create_session,
            list_sessions,
            get_session,
            update_session,
            delete_session,
            batch_delete,
            list_exchanges,
            blocking_continue,
            streaming_continue,
            stream,
            cancel,
        ],
        tags=["sessions"],
    )
