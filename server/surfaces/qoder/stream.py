"""``GET /sessions/{id}/events/stream``: a session's events as Server-Sent Events, the
history first, then live, open across turns until the client leaves.

Each frame is ``id: <event id>``, ``event: <type>`` and ``data:`` the event's JSON (whose
``type`` is the same); keepalives are ``: ping`` comments. ``Last-Event-ID`` resumes after
that event, nothing lost or doubled. ``event_deltas[]=agent.message`` makes this connection
carry the SDK's previews; else a session created with ``incremental_streaming_enabled``
carries Qoder's incremental events; else the text comes whole. One dialect per connection.
A deleted session ends its streams with ``session.deleted``; a server shutting down ends
them, and clients reconnect with ``Last-Event-ID``. Any ``Accept`` is served.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Annotated

import msgspec
from litestar import Router, get
from litestar.params import HeaderParameter, QueryParameter
from litestar.types import ASGIApp, Dependencies

from server.settings import Settings
from server.streaming import EVENT_STREAM, EVENT_STREAM_HEADERS, OpenStreams
from server.surfaces.qoder.errors import api_error
from server.surfaces.qoder.event_wire import AnyEvent, SessionDeleted, type_of
from server.surfaces.qoder.events import CommaTypes, SessionId, Types, not_an_event, resume_point
from server.surfaces.qoder.ids import EVENT_ID_PATTERN, engine_session_id, loose_event_id
from server.surfaces.qoder.models import model_id
from server.surfaces.qoder.session_wire import Attributes, attributes_of
from server.surfaces.qoder.turns import After, Dialect, Placed, Turns, Wanted, wanted_types
from streams.agent_store import RedisAgentCatalog
from streams.clock import iso, now_ms
from streams.errors import NotFound
from streams.service import ConversationService
from streams.session_watch import Gone, SessionWatch, Step
from streams.watch import Ping, Reconnect

PING_FRAME = b": ping\n\n"
DELTA_TYPES = frozenset({"agent.message", "agent.thinking"})
Deltas = Annotated[
    tuple[str, ...],
    QueryParameter(
        name="event_deltas[]",
        description="agent.message: this connection previews agent messages as they grow. "
        "An empty value is none.",
        schema_extra={"items": {"type": "string", "enum": ["", *sorted(DELTA_TYPES)]}},
    ),
]
LastEventId = Annotated[
    str | None,
    HeaderParameter(
        name="Last-Event-ID",
        description="Resume after this event (404 if the session has no turn of it). "
        "Empty: from the start.",
        schema_extra={"pattern": EVENT_ID_PATTERN},
    ),
]
_encode = msgspec.json.Encoder().encode


def frame(placed: Placed, dialect: Dialect) -> bytes:
    """A delta's frame is rendered once per dialect and shared by every reader of it."""
    item = placed.item
    if item is None:
        return _frame(placed.sse_id, placed.event)
    key = f"qoder.{dialect}"
    cached = item.frames.get(key)
    if cached is None:
        cached = item.frames[key] = _frame(placed.sse_id, placed.event)
    return cached


def _frame(sse_id: str, event: AnyEvent) -> bytes:
    head = f"id: {sse_id}\nevent: {type_of(event)}\ndata: "
    return head.encode() + _encode(event) + b"\n\n"


def dialect_of(deltas: Sequence[str], mine: Attributes) -> Dialect:
    unknown = sorted({kind for kind in deltas if kind} - DELTA_TYPES)
    if unknown:
        raise api_error(
            "invalid_request_error",
            f"event_deltas[] takes agent.message or agent.thinking, not {unknown[0]!r}",
            param="event_deltas",
        )
    if "agent.message" in deltas:
        return "previews"
    return "qoder" if mine.incremental_streaming_enabled else "whole"


async def event_frames(
    watch: SessionWatch, turns: Turns, after: After, wanted: Wanted, retry_ms: int
) -> AsyncIterator[bytes]:
    yield f"retry: {retry_ms}\n\n".encode()
    async for event in watch.events():
        if isinstance(event, Step):
            shown = [p for p in turns.render(event) if after.keeps(p) and wanted.keeps(p)]
            if shown:
                yield b"".join(frame(p, turns.dialect) for p in shown)
        elif isinstance(event, Ping):
            yield PING_FRAME
        elif isinstance(event, Gone):
            at = iso(now_ms())
            gone = SessionDeleted(id=loose_event_id(), session_id=turns.session_id, processed_at=at)
            yield _frame(gone.id, gone)
            return
        elif isinstance(event, Reconnect):
            return


@get(
    "/{session_id:str}/events/stream",
    summary="A session's events as Server-Sent Events",
    opt={"streams": EVENT_STREAM},
)
async def stream_events(
    session_id: SessionId,
    service: ConversationService,
    agents: RedisAgentCatalog,
    principal: str,
    settings: Settings,
    open_streams: OpenStreams,
    last_event_id: LastEventId = None,
    event_deltas: Deltas = (),
    types: Types = (),
    type_: CommaTypes = None,
) -> ASGIApp:
    sid = engine_session_id(session_id)
    session = await service.get_session(principal, sid)
    dialect = dialect_of(event_deltas, attributes_of(session))
    ref = resume_point(last_event_id, "Last-Event-ID")
    agent = await agents.resolve(session.agent_id, session.agent_version)
    try:
        watch = await service.watch_session(principal, sid, (ref.xid, ref.log_id) if ref else None)
    except NotFound as error:
        if error.resource != "exchange" or ref is None:
            raise
        raise not_an_event(ref.xid, "Last-Event-ID") from None
    turns = Turns(session_id, dialect, model_id(agent.model), ref)
    wanted = Wanted(wanted_types(list(types), type_))
    frames = event_frames(watch, turns, After(ref), wanted, settings.retry_ms)
    return open_streams.respond(frames, headers=EVENT_STREAM_HEADERS)


def stream_router(mount: str, dependencies: Dependencies) -> Router:
    return Router(
        path=f"{mount}/sessions",
        route_handlers=[stream_events],
        dependencies=dependencies,
        tags=["qoder"],
    )
