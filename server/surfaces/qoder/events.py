"""``/sessions/{id}/events``: send events to a session, and list the events it has had.

A ``user.message`` starts a turn on the session's agent and returns at once: the reply
runs in the background and shows on the event stream (``stream.py``) and in this list. A
``user.interrupt`` stops the running turn and returns once it has ended, so the next
``user.message`` finds the session idle. A ``user.message`` while a turn runs is a 409.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

import msgspec
from litestar import Request, Router, get, post
from litestar.params import Parameter, QueryParameter
from litestar.types import Dependencies

from server.surfaces.qoder.bodies import read_body
from server.surfaces.qoder.errors import api_error
from server.surfaces.qoder.event_wire import (
    Event,
    Incoming,
    Interrupt,
    ListedEvent,
    SendEvents,
    SendEventsShape,
    SentEvent,
    UserInterrupt,
    incoming,
)
from server.surfaces.qoder.ids import (
    EVENT_ID_PATTERN,
    EVENT_ID_SHAPE,
    EventRef,
    Slot,
    engine_session_id,
    event_id,
    loose_event_id,
    parse_event_id,
    session_id,
    turn_id,
)
from server.surfaces.qoder.listing import Limit, matching, one_of, shown
from server.surfaces.qoder.models import model_id
from server.surfaces.qoder.session_wire import attributes_of
from server.surfaces.qoder.turns import After, Dialect, Turns, Wanted, user_message, wanted_types
from streams import types as domain
from streams.agent_store import RedisAgentCatalog
from streams.clock import iso, now_ms
from streams.errors import NotFound, NotRunning
from streams.service import ConversationService
from streams.session_watch import Step
from streams.types import Turn

SessionId = Annotated[str, Parameter(description="The session's id, sess_...")]
Types = Annotated[
    tuple[str, ...], QueryParameter(name="types[]", description="Only events of these types.")
]
CommaTypes = Annotated[
    str | None, QueryParameter(name="type", description="Types, comma-separated.")
]
Order = Annotated[Literal["asc"], Parameter(description="Only asc: oldest first.")]
EventPage = Annotated[
    str | None,
    Parameter(
        description="The next_page of the previous answer: the id of the last event it "
        "listed. Empty: none.",
        schema_extra={"pattern": EVENT_ID_PATTERN},
    ),
]
AfterEvent = Annotated[
    str | None,
    Parameter(
        description="Events right after this one (404 if the session has no turn of it). "
        "Events page forward only. Empty: none.",
        schema_extra={"pattern": EVENT_ID_PATTERN},
    ),
]
AnyRequest = Request[Any, Any, Any]
_TURNS_PER_READ = 20


class SentEvents(msgspec.Struct):
    data: list[SentEvent]


class EventList(msgspec.Struct):
    """A list answer (``listing.ListBody``) of events, whole or incremental."""

    data: list[ListedEvent]
    first_id: str | None
    last_id: str | None
    has_more: bool
    next_page: str | None


@post(
    "/{session_id:str}/events",
    summary="Send events to a session",
    status_code=200,
    opt={"body": SendEventsShape, "statuses": (409, 501)},
)
async def send_events(
    session_id: SessionId, request: AnyRequest, service: ConversationService, principal: str
) -> SentEvents:
    """Every event is checked before any is acted on; they are echoed with their ids."""
    wanted = incoming((await read_body(request, SendEvents)).events)
    session = await service.get_session(principal, engine_session_id(session_id))
    sent = [await _act(event, session, service, principal) for event in wanted]
    return SentEvents(data=sent)


async def _act(
    event: Incoming, session: domain.Session, service: ConversationService, principal: str
) -> SentEvent:
    if isinstance(event, Interrupt):
        return await _interrupt(session, service, principal)
    if attributes_of(session).archived_ms is not None:
        raise api_error(
            "invalid_request_error",
            "the session is archived: it takes no new turns",
            details={"error_code": "session_archived"},
        )
    began = await service.start_continue(principal, session.session_id, Turn(text=event.text))
    return user_message(_public(session), began)


async def _interrupt(
    session: domain.Session, service: ConversationService, principal: str
) -> UserInterrupt:
    """The interrupt as the stopped turn shows it; with nothing stopped, one of no turn."""
    public = _public(session)
    try:
        stopped = await service.cancel(principal, session.session_id)
    except NotRunning:
        stopped = None
    if stopped is None or stopped.status != "cancelled":
        return UserInterrupt(id=loose_event_id(), session_id=public, processed_at=iso(now_ms()))
    xid = stopped.exchange_id
    return UserInterrupt(
        id=event_id(xid, Slot.INTERRUPT),
        session_id=public,
        turn_id=turn_id(xid),
        processed_at=iso(stopped.completed_ms or now_ms()),
    )


@get("/{session_id:str}/events", summary="A session's events, oldest first")
async def list_events(
    session_id: SessionId,
    request: AnyRequest,
    service: ConversationService,
    agents: RedisAgentCatalog,
    principal: str,
    limit: Limit = 20,
    page: EventPage = None,
    after_id: AfterEvent = None,
    types: Types = (),
    type_: CommaTypes = None,
    order: Order = "asc",
) -> EventList:
    """Whole events, and Qoder's incremental ones on a session that has them while the
    turn's replay log is retained. Previews (``event_deltas[]``) are for streams only.
    ``page`` is the id of the last event listed, so it is ``after_id`` by another name."""
    if request.query_params.get("before_id"):
        raise api_error(
            "invalid_request_error", "events page forward only: use after_id", param="before_id"
        )
    cursor = one_of(page=page, after_id=after_id)
    param = cursor[0] if cursor else "page"
    ref = resume_point(cursor[1] if cursor else None, param)
    sid = engine_session_id(session_id)
    session = await service.get_session(principal, sid)
    agent = await agents.resolve(session.agent_id, session.agent_version)
    dialect: Dialect = "qoder" if attributes_of(session).incremental_streaming_enabled else "whole"
    turns = Turns(_public(session), dialect, model_id(agent.model), ref)
    wanted = Wanted(wanted_types(list(types), type_))
    found = await _events(service, principal, sid, turns, ref, limit, wanted, param)
    data = cast(list[ListedEvent], found[:limit])
    more = len(found) > limit
    first_id = data[0].id if data else None
    last_id = data[-1].id if data else None
    return EventList(data, first_id, last_id, more, last_id if more else None)


async def _events(
    service: ConversationService,
    principal: str,
    sid: str,
    turns: Turns,
    ref: EventRef | None,
    limit: int,
    wanted: Wanted,
    param: str,
) -> list[Event]:
    """Up to ``limit + 1`` events after ``ref``, reading a few turns at a time."""
    after = After(ref)
    resume = (ref.xid, ref.log_id) if ref else None
    found: list[Event] = []
    while len(found) <= limit:
        steps, following = await history_of(service, principal, sid, resume, param)
        for step in steps:
            for placed in turns.render(step):
                if isinstance(placed.event, Event) and after.keeps(placed) and wanted.keeps(placed):
                    found.append(placed.event)
        if following is None:
            break
        resume = (following, None)
    return found


async def history_of(
    service: ConversationService,
    principal: str,
    sid: str,
    resume: tuple[str, str | None] | None,
    param: str = "page",
) -> tuple[list[Step], str | None]:
    """:meth:`ConversationService.session_history`, a few turns at a time; resuming in a
    turn the session never had is a 404 naming ``param``."""
    try:
        return await service.session_history(principal, sid, _TURNS_PER_READ, resume)
    except NotFound as error:
        if error.resource != "exchange" or resume is None:
            raise
        raise not_an_event(resume[0], param) from None


def resume_point(event: str | None, param: str) -> EventRef | None:
    """The event a reader resumes after (none when empty); 400 for text of another shape
    than an event id's, which is in the OpenAPI document."""
    wanted = matching(event, param, EVENT_ID_PATTERN, EVENT_ID_SHAPE)
    return parse_event_id(wanted) if wanted is not None else None


def not_an_event(xid: str, param: str) -> Exception:
    """A well-formed event id of a turn the session does not have: not found."""
    return api_error(
        "not_found_error",
        f"{param} names turn {shown(xid)}, which this session does not have",
        param=param,
    )


def _public(session: domain.Session) -> str:
    return session_id(session.session_id)


def events_router(mount: str, dependencies: Dependencies) -> Router:
    return Router(
        path=f"{mount}/sessions",
        route_handlers=[send_events, list_events],
        dependencies=dependencies,
        tags=["qoder"],
    )
