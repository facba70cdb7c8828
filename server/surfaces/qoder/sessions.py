"""``/sessions``: create, read, update, list, archive, delete and cancel sessions.

A session here is an engine session under ``sess_`` + its id: the same conversation every
surface serves. Its agent is pinned at creation (the latest version, or the one named);
its ``delta_flush_interval_ms`` is the engine's refresh interval.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.params import Parameter, QueryParameter
from litestar.types import Dependencies

from server.surfaces.qoder.bodies import checked_metadata, read_body
from server.surfaces.qoder.errors import api_error
from server.surfaces.qoder.event_wire import Said, incoming
from server.surfaces.qoder.ids import engine_session_id
from server.surfaces.qoder.listing import Limit, ListBody, present
from server.surfaces.qoder.session_list import (
    AfterSession,
    BeforeSession,
    ListQuery,
    SessionPage,
    list_sessions,
)
from server.surfaces.qoder.session_wire import (
    AgentUpdate,
    Attributes,
    CreateSession,
    SessionBody,
    SessionDeleted,
    SessionStatus,
    UpdateSession,
    attributes_of,
    attributes_with,
    checked_interval,
    merged_metadata,
    not_available,
    session_out,
)
from streams import types as domain
from streams.agent_store import RedisAgentCatalog
from streams.clock import now_ms
from streams.environments import Environment, RedisEnvironments
from streams.errors import NotFound
from streams.service import ConversationService
from streams.types import NewSession, SessionPatch, Turn

SessionId = Annotated[str, Parameter(description="The session's id, sess_...")]
Statuses = Annotated[
    tuple[str, ...],
    QueryParameter(name="statuses[]", description="Only sessions in one of these statuses."),
]
AgentFilter = Annotated[
    str | None, Parameter(description="Only sessions of this agent. Empty: any agent.")
]
AnyRequest = Request[Any, Any, Any]


async def shown(
    service: ConversationService,
    agents: RedisAgentCatalog,
    principal: str,
    session: domain.Session,
) -> SessionBody:
    """One session as this API shows it, with the run time of its turns."""
    agent = await agents.resolve(session.agent_id, session.agent_version)
    turns = await service.all_exchanges(principal, session.session_id)
    return session_out(session, agent, now_ms(), turns)


@post(
    "/",
    summary="Create a session",
    status_code=201,
    opt={"body": CreateSession, "statuses": (404, 501)},
)
async def create_session(
    request: AnyRequest,
    service: ConversationService,
    agents: RedisAgentCatalog,
    environments: RedisEnvironments,
    principal: str,
) -> SessionBody:
    """Everything is checked before the session is stored: a refused request stores
    nothing. An initial ``user.message`` starts the first turn at once."""
    body = await read_body(request, CreateSession)
    _check(body)
    first = _first_turn(body, service)
    new = await _new_session(body, principal, agents, environments)
    session = await service.create_session(principal, new)
    if first is not None:
        await service.start_continue(principal, session.session_id, first)
        session = await service.get_session(principal, session.session_id)
    return await shown(service, agents, principal, session)


def _check(body: CreateSession) -> None:
    """Refuse what Parley cannot honour rather than drop it silently."""
    for feature in ("resources", "vault_ids"):
        if getattr(body, feature):
            raise not_available(feature, "must be empty: Parley mounts no resources or vaults")
    if body.budget is not None:
        raise not_available("budget", "is not supported: Parley enforces no spend ceiling")
    if body.delta_flush_interval_ms is not None:
        checked_interval(body.delta_flush_interval_ms)
    checked_metadata(body.metadata)


def _first_turn(body: CreateSession, service: ConversationService) -> Turn | None:
    """The turn an initial ``user.message`` starts, checked as the engine would."""
    events = incoming(body.initial_events) if body.initial_events else []
    if not all(isinstance(e, Said) for e in events):
        raise api_error(
            "invalid_request_error",
            "initial_events may hold one user.message and nothing else",
            param="initial_events",
        )
    said = [e for e in events if isinstance(e, Said)]
    if not said:
        return None
    turn = Turn(text=said[0].text)
    service.check_turn(turn)
    return turn


async def _new_session(
    body: CreateSession,
    principal: str,
    agents: RedisAgentCatalog,
    environments: RedisEnvironments,
) -> NewSession:
    ref = body.agent_ref()
    agent = await agents.resolve(ref.id, ref.version)
    environment = await _environment(environments, principal, body.environment_id)
    if environment.archived_ms is not None:
        raise api_error(
            "invalid_request_error",
            f"environment {body.environment_id} is archived: create sessions in another",
            param="environment_id",
            details={"error_code": "environment_archived"},
        )
    mine = Attributes(
        environment_id=body.environment_id,
        memory_store_ids=body.memory_store_ids,
        incremental_streaming_enabled=body.incremental_streaming_enabled,
    )
    return NewSession(
        agent_id=agent.agent_id,
        agent_version=agent.version,
        title=body.title,
        metadata=body.metadata,
        refresh_interval_ms=body.delta_flush_interval_ms,
        attributes=attributes_with(None, mine),
    )


async def _environment(environments: RedisEnvironments, principal: str, env_id: str) -> Environment:
    """The caller's environment ``env_id``; a missing one (or another principal's) is the
    SDK's ``environment_not_found``."""
    try:
        return await environments.get(principal, env_id)
    except NotFound as error:
        raise api_error(
            "not_found_error",
            error.message,
            param="environment_id",
            details={"error_code": "environment_not_found"},
        ) from None


@get("/", summary="List sessions, newest first", opt={"statuses": (404,)})
async def list_all(
    service: ConversationService,
    agents: RedisAgentCatalog,
    principal: str,
    limit: Limit = 20,
    page: SessionPage = None,
    after_id: AfterSession = None,
    before_id: BeforeSession = None,
    statuses: Statuses = (),
    include_archived: bool = False,
    agent_id: AgentFilter = None,
    order: Annotated[
        Literal["asc", "desc"], Parameter(description="By creation time; newest first: desc.")
    ] = "desc",
) -> ListBody[SessionBody]:
    query = ListQuery(
        limit=limit,
        page=page,
        after_id=after_id,
        before_id=before_id,
        statuses=frozenset(status for status in statuses if status) or None,
        include_archived=include_archived,
        agent_id=present(agent_id),
        descending=order == "desc",
    )
    return await list_sessions(service, agents, principal, query)


@get("/{session_id:str}", summary="A session")
async def get_session(
    session_id: SessionId,
    service: ConversationService,
    agents: RedisAgentCatalog,
    principal: str,
) -> SessionBody:
    session = await service.get_session(principal, engine_session_id(session_id))
    return await shown(service, agents, principal, session)


@post(
    "/{session_id:str}",
    summary="Update a session's title, metadata, interval or agent tools",
    status_code=200,
    opt={"body": UpdateSession, "body_required": False, "statuses": (409, 501)},
)
async def update_session(
    session_id: SessionId,
    request: AnyRequest,
    service: ConversationService,
    agents: RedisAgentCatalog,
    principal: str,
) -> SessionBody:
    body = await read_body(request, UpdateSession)
    sid = engine_session_id(session_id)
    session = await service.get_session(principal, sid)
    patch = _patch(body, session)
    return await shown(
        service, agents, principal, await service.update_session(principal, sid, patch)
    )


def _patch(body: UpdateSession, session: domain.Session) -> SessionPatch:
    if body.vault_ids:
        raise not_available("vault_ids", "must be empty: Parley keeps no vaults")
    if body.budget is not None and not isinstance(body.budget, msgspec.UnsetType):
        raise not_available("budget", "is not supported: Parley enforces no spend ceiling")
    patch = SessionPatch(title=body.title)
    if not isinstance(body.metadata, msgspec.UnsetType):
        patch.metadata = checked_metadata(merged_metadata(session.metadata, body.metadata))
    if not isinstance(body.delta_flush_interval_ms, msgspec.UnsetType):
        patch.refresh_interval_ms = checked_interval(body.delta_flush_interval_ms)
    if not isinstance(body.agent, msgspec.UnsetType):
        patch.attributes = _agent_overrides(body.agent, session)
    return patch


def _agent_overrides(update: AgentUpdate, session: domain.Session) -> dict[str, Any]:
    """The session's attributes with the agent's tools or MCP servers replaced (stored and
    shown; Parley runs no tools)."""
    if session.status == "running":
        raise api_error(
            "conflict_error", "the session is running: change its agent once it is idle"
        )
    mine = attributes_of(session)
    if not isinstance(update.tools, msgspec.UnsetType):
        mine.tools = update.tools
    if not isinstance(update.mcp_servers, msgspec.UnsetType):
        mine.mcp_servers = update.mcp_servers
    return attributes_with(session.attributes, mine)


@post("/{session_id:str}/archive", summary="Archive a session", status_code=200)
async def archive_session(
    session_id: SessionId,
    service: ConversationService,
    agents: RedisAgentCatalog,
    principal: str,
) -> SessionBody:
    """Archived sessions leave lists unless ``include_archived``, and take no new turns."""
    sid = engine_session_id(session_id)
    session = await service.get_session(principal, sid)
    mine = attributes_of(session)
    if mine.archived_ms is None:
        mine.archived_ms = now_ms()
        patch = SessionPatch(attributes=attributes_with(session.attributes, mine))
        session = await service.update_session(principal, sid, patch)
    return await shown(service, agents, principal, session)


@delete("/{session_id:str}", summary="Delete a session and its events", status_code=200)
async def delete_session(
    session_id: SessionId, service: ConversationService, principal: str
) -> SessionDeleted:
    sid = engine_session_id(session_id)
    if not await service.delete_session(principal, sid):
        await service.get_session(principal, sid)  # raises the 404
    return SessionDeleted(id=session_id)


@post(
    "/{session_id:str}/cancel",
    summary="Stop the running turn (Qoder): 202 canceling, or 200 idle when none ran",
    status_code=200,
    opt={"statuses": (202,)},
)
async def cancel_session(
    session_id: SessionId, service: ConversationService, principal: str
) -> Response[SessionStatus]:
    """202 ``canceling`` when a turn was running (it ends interrupted shortly); 200 with the
    session idle when none was."""
    running = await service.interrupt(principal, engine_session_id(session_id))
    if running is None:
        return Response(SessionStatus(id=session_id, status="idle"), status_code=200)
    return Response(SessionStatus(id=session_id, status="canceling"), status_code=202)


def sessions_router(mount: str, dependencies: Dependencies) -> Router:
    return Router(
        path=f"{mount}/sessions",
        route_handlers=[
            create_session,
            list_all,
            get_session,
            update_session,
            archive_session,
            delete_session,
            cancel_session,
        ],
        dependencies=dependencies,
        tags=["qoder"],
    )
