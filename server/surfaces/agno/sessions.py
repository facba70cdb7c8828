"""``/sessions``: Agno's session routes over the service. Every Parley session is an agent
session; teams and workflows have none.

``user_id``, where Agno takes it, scopes a request to that user's sessions: another user's
session is not found. ``db_id`` and ``table`` name Agno storage and are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Annotated, Literal

from litestar import HttpMethod, Router, delete, get, patch, post, route
from litestar.params import Parameter, QueryParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT
from litestar.types import Dependencies

from server.surfaces.agno.errors import bad_request, invalid, no_session
from server.surfaces.agno.ids import new_session_id, run_ids_of, session_id_of
from server.surfaces.agno.wire import (
    AgentSessionDetailSchema,
    CreateSessionRequest,
    DeleteSessionsRequest,
    PaginationInfo,
    RenameRequest,
    RunSchema,
    SessionsPage,
    SessionType,
    UpdateSessionRequest,
    run_out,
    session_detail,
    session_out,
)
from server.surfaces.errors import SurfaceError
from streams import types as domain
from streams.agent_store import RedisAgentCatalog
from streams.agents import DEFAULT_AGENT_ID
from streams.errors import Conflict, NotFound
from streams.limits import check_metadata
from streams.service import ConversationService
from streams.types import NewSession, SessionPatch, SessionSearch

SessionId = Annotated[str, Parameter(description="The session id; dashed or undashed UUID.")]
TypeQuery = Annotated[SessionType | None, QueryParameter(name="type")]
# Parley has agent sessions only: another type is refused (400) when creating one.
CreateTypeQuery = Annotated[
    SessionType | None, QueryParameter(name="type", schema_extra={"enum": ["agent"]})
]
_SORTS: dict[str, domain.SearchSort] = {
    "created_at": "created",
    "updated_at": "updated",
    "session_name": "title",
}


async def _session(
    service: ConversationService, principal: str, session_id: str, user_id: str | None
) -> domain.Session:
    session = await service.get_session(principal, session_id_of(session_id))
    if user_id is not None and session.user_id != user_id:
        raise no_session(session_id)
    return session


async def _detail(
    service: ConversationService,
    agents: RedisAgentCatalog,
    principal: str,
    session: domain.Session,
) -> AgentSessionDetailSchema:
    agent = await agents.resolve(session.agent_id, session.agent_version)
    exchanges = await service.all_exchanges(principal, session.session_id)
    return session_detail(session, agent, exchanges)


def _metadata(value: dict[str, str] | None) -> dict[str, str] | None:
    """Agno's metadata is Parley's session metadata, under the rule every surface shares."""
    if value is not None:
        try:
            check_metadata(value)
        except ValueError as error:
            raise invalid(["body", "metadata"], str(error), "value_error") from None
    return value


def _name(value: str) -> str:
    if not value.strip():
        raise bad_request("Session name cannot be empty")
    return value


@get("/", summary="List sessions: filtered, sorted, one numbered page with the total")
async def list_sessions(
    service: ConversationService,
    principal: str,
    session_type: TypeQuery = None,
    component_id: str | None = None,
    user_id: str | None = None,
    session_name: str | None = None,
    limit: Annotated[int, Parameter(ge=1)] = 20,
    page: Annotated[int, Parameter(ge=0, description="1 is the first; 0 is read as 1.")] = 1,
    sort_by: Literal["created_at", "updated_at", "session_name"] = "created_at",
    sort_order: Literal["asc", "desc"] = "desc",
) -> SessionsPage:
    started = time.perf_counter()
    found: domain.Counted[domain.Session] = domain.Counted(items=[], total=0)
    if session_type in (None, "agent"):
        search = SessionSearch(
            agent_id=component_id,
            user_id=user_id,
            title_contains=session_name,
            sort=_SORTS[sort_by],
            descending=sort_order == "desc",
            offset=(max(page, 1) - 1) * limit,
            limit=limit,
        )
        found = await service.search_sessions(principal, search)
    meta = PaginationInfo(
        page=page,
        limit=limit,
        total_pages=-(-found.total // limit),
        total_count=found.total,
        search_time_ms=round((time.perf_counter() - started) * 1000, 2),
    )
    firsts = await asyncio.gather(*(_first_input(service, principal, s) for s in found.items))
    data = [session_out(s, first) for s, first in zip(found.items, firsts, strict=True)]
    return SessionsPage(data=data, meta=meta)


async def _first_input(
    service: ConversationService, principal: str, session: domain.Session
) -> str | None:
    """What an untitled session is called: its first message, as AgentOS shows it."""
    if session.title:
        return None
    try:
        page = await service.list_exchanges(principal, session.session_id, 1, None)
    except NotFound:  # deleted since it was listed
        return None
    return page.items[0].input_text if page.items else None


@post(
    "/",
    summary="Create an agent session",
    status_code=HTTP_201_CREATED,
    opt={"statuses": (404, 409), "body_required": False},
)
async def create_session(
    service: ConversationService,
    agents: RedisAgentCatalog,
    principal: str,
    data: CreateSessionRequest | None = None,
    session_type: CreateTypeQuery = "agent",
) -> AgentSessionDetailSchema:
    """No body: a new session of the default agent, as AgentOS makes one. An id in use, by
    this key or another, is refused (409), never overwritten; an unknown agent is 404."""
    body = data or CreateSessionRequest()
    if session_type != "agent":
        raise bad_request(f"Invalid session type: {session_type}")
    sid = new_session_id(body.session_id) if body.session_id else None
    new = NewSession(
        agent_id=body.agent_id or DEFAULT_AGENT_ID,
        title=_name(body.session_name) if body.session_name is not None else None,
        metadata=_metadata(body.metadata) or {},
        user_id=body.user_id,
        state=body.session_state,
    )
    try:
        session = await service.create_session(principal, new, sid, exclusive=True)
    except Conflict:
        raise SurfaceError(
            "conflict",
            "conflict",
            f"Session with id '{body.session_id}' already exists. "
            f"Use PATCH /sessions/{body.session_id} to update it.",
            {},
        ) from None
    return await _detail(service, agents, principal, session)


@get("/{session_id:str}", summary="A session with its chat history")
async def get_session(
    session_id: SessionId,
    service: ConversationService,
    agents: RedisAgentCatalog,
    principal: str,
    session_type: TypeQuery = None,
    user_id: str | None = None,
) -> AgentSessionDetailSchema:
    if session_type not in (None, "agent"):
        raise SurfaceError(
            "not_found",
            "not_found",
            f"{session_type.title()} Session with id '{session_id}' not found",
            {},
        )
    session = await _session(service, principal, session_id, user_id)
    return await _detail(service, agents, principal, session)


@get("/{session_id:str}/runs", summary="The session's runs, oldest first")
async def list_runs(
    session_id: SessionId,
    service: ConversationService,
    principal: str,
    user_id: str | None = None,
    created_after: Annotated[int | None, Parameter(description="Epoch seconds")] = None,
    created_before: Annotated[int | None, Parameter(description="Epoch seconds")] = None,
) -> list[RunSchema]:
    session = await _session(service, principal, session_id, user_id)
    runs = await service.all_exchanges(principal, session.session_id)
    after = created_after * 1000 if created_after is not None else None
    before = created_before * 1000 if created_before is not None else None
    return [
        run_out(x, session)
        for x in runs
        if (after is None or x.created_ms >= after) and (before is None or x.created_ms <= before)
    ]


@get("/{session_id:str}/runs/{run_id:str}", summary="One run of the session")
async def get_run(
    session_id: SessionId,
    run_id: str,
    service: ConversationService,
    principal: str,
    user_id: str | None = None,
) -> RunSchema:
    session = await _session(service, principal, session_id, user_id)
    for xid in run_ids_of(run_id):
        with contextlib.suppress(NotFound):
            return run_out(await service.get_exchange(principal, session.session_id, xid), session)
    raise SurfaceError(
        "not_found", "not_found", f"Run with ID {run_id} not found in session {session_id}", {}
    )


@route(
    "/{session_id:str}/rename",
    http_method=[HttpMethod.POST, HttpMethod.PUT],
    summary="Rename a session (POST, as Agno's code has it; PUT, as its docs say)",
    status_code=HTTP_200_OK,
)
async def rename_session(
    session_id: SessionId,
    data: RenameRequest,
    service: ConversationService,
    agents: RedisAgentCatalog,
    principal: str,
    user_id: str | None = None,
) -> AgentSessionDetailSchema:
    session = await _session(service, principal, session_id, user_id)
    patch_ = SessionPatch(title=_name(data.session_name))
    session = await service.update_session(principal, session.session_id, patch_)
    return await _detail(service, agents, principal, session)


@patch("/{session_id:str}", summary="Change a session's name, state or metadata")
async def update_session(
    session_id: SessionId,
    data: UpdateSessionRequest,
    service: ConversationService,
    agents: RedisAgentCatalog,
    principal: str,
    user_id: str | None = None,
) -> AgentSessionDetailSchema:
    """``summary`` is accepted and ignored: Parley writes no session summaries."""
    session = await _session(service, principal, session_id, user_id)
    patch_ = SessionPatch()
    if data.session_name is not None:
        patch_.title = _name(data.session_name)
    if data.session_state is not None:
        patch_.state = data.session_state
    if data.metadata is not None:
        patch_.metadata = _metadata(data.metadata) or {}
    session = await service.update_session(principal, session.session_id, patch_)
    return await _detail(service, agents, principal, session)


@delete("/{session_id:str}", summary="Delete a session (204 whether or not it existed)")
async def delete_session(
    session_id: SessionId,
    service: ConversationService,
    principal: str,
    user_id: str | None = None,
) -> None:
    await _delete(service, principal, session_id, user_id)


@delete("/", summary="Delete several sessions", status_code=HTTP_204_NO_CONTENT)
async def delete_sessions(
    data: DeleteSessionsRequest,
    service: ConversationService,
    principal: str,
    user_id: str | None = None,
) -> None:
    if len(data.session_ids) != len(data.session_types):
        raise bad_request("Session IDs and session types must have the same length")
    for session_id, kind in zip(data.session_ids, data.session_types, strict=True):
        if kind == "agent":
            await _delete(service, principal, session_id, user_id)


async def _delete(
    service: ConversationService, principal: str, session_id: str, user_id: str | None
) -> None:
    """As Agno does, deleting what is not there (or is another user's) is no error."""
    sid = session_id_of(session_id)
    if user_id is not None:
        try:
            session = await service.get_session(principal, sid)
        except NotFound:
            return
        if session.user_id != user_id:
            return
    await service.delete_session(principal, sid)


def sessions_router(dependencies: Dependencies) -> Router:
    return Router(
        path="/sessions",
        route_handlers=[
            list_sessions,
            create_session,
            get_session,
            list_runs,
            get_run,
            rename_session,
            update_session,
            delete_session,
            delete_sessions,
        ],
        dependencies=dependencies,
        tags=["agno"],
    )
