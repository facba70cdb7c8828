"""Sessions of an agent, their exchanges, titles and traces, as Palantir AIP Agents v2 has them.

Every handler goes through the service: a session is the same session on every surface, and
its id here is the RID ``ri.aip-agents..session.<conversationId>``.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from litestar import Request, Router, delete, get, post, put
from litestar.exceptions import HTTPException
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT
from litestar.types import ASGIApp, Dependencies

from server.metrics import MetricsExporter
from server.streaming import OpenStreams
from server.surfaces.errors import SurfaceError
from server.surfaces.palantir.ids import ID_PATTERN, trace_id
from server.surfaces.palantir.params import (
    SESSIONS_TOKEN,
    AgentRid,
    PageSize,
    SessionRid,
    SessionsPageToken,
    page_token_of,
)
from server.surfaces.palantir.resolve import (
    agent_id_of,
    check_agent,
    session_id_of,
    version_of,
)
from server.surfaces.palantir.stream import HEADERS, text_chunks
from server.surfaces.palantir.wire import (
    TITLE_MAX,
    CancelRequest,
    CancelSessionResponse,
    Content,
    Contexts,
    ContinueRequest,
    CreateSessionRequest,
    RagContextRequest,
    Session,
    SessionExchangeResult,
    SessionsPage,
    SessionTrace,
    UpdateTitleRequest,
    exchange_out,
    result_out,
    session_out,
)
from streams import types as domain
from streams.service import ConversationService
from streams.types import NewSession, SessionPatch, SessionQuery, Turn

_ACCEPTED = ("application/octet-stream", "application/json", "application/*", "*/*")


async def _session(
    service: ConversationService, principal: str, agent_rid: str, rid: str
) -> domain.Session:
    session = await service.get_session(principal, session_id_of(agent_rid, rid))
    return check_agent(session, agent_rid, rid)


def _parameters(agent_rid: str, rid: str, inputs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """String parameters go to the model as named context; Parley takes no other type."""
    values: dict[str, str] = {}
    for name, value in inputs.items():
        kind = value.get("type")
        if kind != "string" or not isinstance(value.get("value"), str):
            raise SurfaceError(
                "invalid",
                "InvalidParameterType",
                f"parameter {name} must be a string value",
                {
                    "agentRid": agent_rid,
                    "sessionRid": rid,
                    "parameter": name,
                    "expectedType": "string",
                    "receivedType": str(kind),
                },
            )
        values[name] = value["value"]
    return values


def _exchange_id(agent_rid: str, rid: str, field: str, value: str | None) -> str | None:
    """``messageId`` or ``sessionTraceId`` as the exchange's id: None for none or an empty
    one, refused when the engine could not keep it (``fullmatch``, as the schema's pattern
    reads: a final line break is no part of an id)."""
    if not value:
        return None
    if re.fullmatch(ID_PATTERN, value) is None:
        message = (
            f"{field} must be a UUID (or 1-64 letters, digits, '-' or '_'), got {value[:80]!r}"
        )
        ids = {"agentRid": agent_rid, "sessionRid": rid}
        details = {**ids, "message": message, "code": "invalid_input"}
        raise SurfaceError("invalid", "Default:InvalidArgument", message, details)
    return value


def _turn(agent_rid: str, rid: str, body: ContinueRequest, exchange_id: str | None) -> Turn:
    parameters = _parameters(agent_rid, rid, body.parameter_inputs)
    return Turn(text=body.user_input.text, exchange_id=exchange_id, parameters=parameters)


@post(
    "/{agent_rid:str}/sessions",
    summary="Create a session",
    status_code=HTTP_200_OK,
    # No body (or null): the agent's latest version. Its answer's rid names the session the
    # operations under it take.
    opt={"body_required": False, "creates": {"session_rid": "/rid"}},
)
async def create_session(
    agent_rid: AgentRid,
    service: ConversationService,
    principal: str,
    data: CreateSessionRequest | None = None,
) -> Session:
    wanted = data.agent_version if data else None
    version = version_of(agent_rid, wanted, "agentVersion") if wanted is not None else None
    new = NewSession(agent_id=agent_id_of(agent_rid), agent_version=version)
    return session_out(await service.create_session(principal, new))


@get("/{agent_rid:str}/sessions/{session_rid:str}", summary="Get a session")
async def get_session(
    agent_rid: AgentRid, session_rid: SessionRid, service: ConversationService, principal: str
) -> Session:
    return session_out(await _session(service, principal, agent_rid, session_rid))


@get("/{agent_rid:str}/sessions", summary="The agent's sessions, newest first")
async def list_sessions(
    agent_rid: AgentRid,
    service: ConversationService,
    principal: str,
    page_size: PageSize = 100,
    page_token: SessionsPageToken = None,
) -> SessionsPage:
    token = page_token_of(page_token, SESSIONS_TOKEN)
    query = SessionQuery(agent_id=agent_id_of(agent_rid), limit=page_size, cursor=token)
    page = await service.list_sessions(principal, query)
    data = [session_out(s) for s in page.items]
    return SessionsPage(data=data, next_page_token=page.next_cursor)


@get("/allSessions", summary="Every session of the caller, newest first")
async def all_sessions(
    service: ConversationService,
    principal: str,
    page_size: PageSize = 100,
    page_token: SessionsPageToken = None,
) -> SessionsPage:
    token = page_token_of(page_token, SESSIONS_TOKEN)
    page = await service.list_sessions(principal, SessionQuery(limit=page_size, cursor=token))
    data = [session_out(s) for s in page.items]
    return SessionsPage(data=data, next_page_token=page.next_cursor)


@delete("/{agent_rid:str}/sessions/{session_rid:str}", summary="Delete a session")
async def delete_session(
    agent_rid: AgentRid, session_rid: SessionRid, service: ConversationService, principal: str
) -> None:
    session = await _session(service, principal, agent_rid, session_rid)
    await service.delete_session(principal, session.session_id)


@post(
    "/{agent_rid:str}/sessions/{session_rid:str}/blockingContinue",
    summary="Send a user turn; answer when the reply is done",
    status_code=HTTP_200_OK,
    # 409: a reply already running; 500: SessionExecutionFailed, the model's reply failed
    opt={"statuses": (409, 500)},
)
async def blocking_continue(
    agent_rid: AgentRid,
    session_rid: SessionRid,
    data: ContinueRequest,
    service: ConversationService,
    principal: str,
) -> SessionExchangeResult:
    session = await _session(service, principal, agent_rid, session_rid)
    trace = _exchange_id(agent_rid, session_rid, "sessionTraceId", data.session_trace_id)
    turn = _turn(agent_rid, session_rid, data, trace)
    exchange = await service.blocking_continue(principal, session.session_id, turn)
    if exchange.status == "failed":
        raise _failed(agent_rid, session_rid, exchange)
    return result_out(exchange)


def _failed(agent_rid: str, rid: str, exchange: domain.Exchange) -> SurfaceError:
    error = exchange.error
    code = error.code if error else "internal_error"
    message = error.message if error else "the exchange failed"
    ids = {"agentRid": agent_rid, "sessionRid": rid}
    if code == "upstream_rate_limited":
        return SurfaceError("invalid", "RateLimitExceeded", message, {**ids, "details": message})
    named = {**ids, "message": message, "details": code}
    return SurfaceError("internal", "SessionExecutionFailed", message, named)


@post(
    "/{agent_rid:str}/sessions/{session_rid:str}/streamingContinue",
    summary="Send a user turn; stream the reply's markdown as raw bytes",
    status_code=HTTP_200_OK,
    # 406: an Accept it cannot answer; 409: a reply already running
    opt={"streams": "application/octet-stream", "statuses": (406, 409)},
)
async def streaming_continue(
    request: Request[Any, Any, Any],
    agent_rid: AgentRid,
    session_rid: SessionRid,
    data: ContinueRequest,
    service: ConversationService,
    principal: str,
    open_streams: OpenStreams,
    exporter: MetricsExporter,
) -> ASGIApp:
    _check_accept(request.headers.get("accept"))
    session = await _session(service, principal, agent_rid, session_rid)
    message_id = _exchange_id(agent_rid, session_rid, "messageId", data.message_id)
    trace = _exchange_id(agent_rid, session_rid, "sessionTraceId", data.session_trace_id)
    exchange_id = message_id or trace or str(uuid.uuid4())
    turn = _turn(agent_rid, session_rid, data, exchange_id)
    watch = await service.streaming_continue(principal, session.session_id, turn)
    chunks = text_chunks(watch, exporter.metrics.delivered)
    return open_streams.respond(chunks, headers=HEADERS)


def _check_accept(accept: str | None) -> None:
    if not accept:
        return
    types = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if not any(t in _ACCEPTED for t in types):
        raise HTTPException(
            status_code=406,
            detail="streamingContinue answers application/octet-stream (or application/json)",
        )


@post(
    "/{agent_rid:str}/sessions/{session_rid:str}/cancel",
    summary="Cancel the streamed exchange messageId",
    status_code=HTTP_200_OK,
)
async def cancel(
    agent_rid: AgentRid,
    session_rid: SessionRid,
    data: CancelRequest,
    service: ConversationService,
    principal: str,
) -> CancelSessionResponse:
    """With ``response``, the exchange keeps it as its reply; without, it leaves the history."""
    session = await _session(service, principal, agent_rid, session_rid)
    exchange = await service.cancel(
        principal,
        session.session_id,
        data.message_id,
        reply=data.response,
        drop=data.response is None,
    )
    if data.response is None:
        return CancelSessionResponse()
    return CancelSessionResponse(result=result_out(exchange))


@put(
    "/{agent_rid:str}/sessions/{session_rid:str}/updateTitle",
    summary="Set the session's title (longer ones are cut at 200 characters)",
    status_code=HTTP_204_NO_CONTENT,
)
async def update_title(
    agent_rid: AgentRid,
    session_rid: SessionRid,
    data: UpdateTitleRequest,
    service: ConversationService,
    principal: str,
) -> None:
    session = await _session(service, principal, agent_rid, session_rid)
    patch = SessionPatch(title=data.title[:TITLE_MAX])
    await service.update_session(principal, session.session_id, patch)


@get(
    "/{agent_rid:str}/sessions/{session_rid:str}/content",
    summary="Every finished exchange, oldest first",
)
async def content(
    agent_rid: AgentRid, session_rid: SessionRid, service: ConversationService, principal: str
) -> Content:
    session = await _session(service, principal, agent_rid, session_rid)
    exchanges = await _history(service, principal, session.session_id)
    return Content(exchanges=[exchange_out(x) for x in exchanges if x.status != "running"])


async def _history(service: ConversationService, principal: str, sid: str) -> list[domain.Exchange]:
    """Every exchange not dropped by a cancel, oldest first."""
    return [x for x in await service.all_exchanges(principal, sid) if not x.dropped]


@put(
    "/{agent_rid:str}/sessions/{session_rid:str}/ragContext",
    summary="The retrieved context a turn would get: none, as Parley does no retrieval",
    status_code=HTTP_200_OK,
)
async def rag_context(
    agent_rid: AgentRid,
    session_rid: SessionRid,
    data: RagContextRequest,
    service: ConversationService,
    principal: str,
) -> Contexts:
    await _session(service, principal, agent_rid, session_rid)
    return Contexts()


@get(
    "/{agent_rid:str}/sessions/{session_rid:str}/sessionTraces/{session_trace_id:str}",
    summary="The trace of one exchange",
)
async def session_trace(
    agent_rid: AgentRid,
    session_rid: SessionRid,
    session_trace_id: str,
    service: ConversationService,
    principal: str,
) -> SessionTrace:
    session = await _session(service, principal, agent_rid, session_rid)
    for exchange in await _history(service, principal, session.session_id):
        if trace_id(exchange.exchange_id) == session_trace_id:
            running = exchange.status == "running"
            return SessionTrace(
                id=session_trace_id, status="IN_PROGRESS" if running else "COMPLETE"
            )
    raise SurfaceError(
        "not_found",
        "SessionTraceNotFound",
        f"no trace {session_trace_id} in {session_rid}",
        {"agentRid": agent_rid, "sessionRid": session_rid, "sessionTraceId": session_trace_id},
    )


def sessions_router(dependencies: Dependencies) -> Router:
    return Router(
        path="/api/v2/aipAgents/agents",
        route_handlers=[
            all_sessions,
            create_session,
            get_session,
            list_sessions,
            delete_session,
            blocking_continue,
            streaming_continue,
            cancel,
            update_title,
            content,
            rag_context,
            session_trace,
        ],
        dependencies=dependencies,
        tags=["palantir"],
    )
