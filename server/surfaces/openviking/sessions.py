"""``/api/v1/sessions``: OpenViking's session routes over the service.

Messages added here join the session's history without running the model (imported
exchanges); commit is real compaction; context is what the next exchange would send. A GET
of a missing session answers HTTP 200 with ``status: "error"``, as v0.3.24 does (its client
checks ``status`` first); so does a missing archive.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from litestar import Request, Router, delete, get, post
from litestar.params import Parameter
from litestar.types import Dependencies

from server.surfaces.errors import SurfaceError
from server.surfaces.openviking.errors import ErrorInfo, session_not_found
from server.surfaces.openviking.identity import agent_header, user_header, user_of
from server.surfaces.openviking.wire import (
    SESSION_ID,
    SESSION_ID_RULE,
    Added,
    AddedBatch,
    AddMessageRequest,
    ArchiveOut,
    BatchMessagesRequest,
    CommitEnvelope,
    CommitRequest,
    Committed,
    Created,
    CreateSessionRequest,
    Deleted,
    Envelope,
    Listed,
    Message,
    SessionContextOut,
    SessionDetail,
    archive_out,
    archive_uri,
    context_out,
    ok,
    session_detail,
)
from streams.agents import DEFAULT_AGENT_ID
from streams.errors import Conflict, NotFound
from streams.paging import every_item
from streams.service import ConversationService
from streams.types import ImportedMessage, NewSession, Session, SessionQuery

AnyRequest = Request[Any, Any, Any]
_ARCHIVE = re.compile(r"^archive_(\d{1,9})$")
_SESSION_ID = re.compile(SESSION_ID)
# A session a request may create: the id must be one Parley can store.
NewSessionId = Annotated[
    str, Parameter(description=f"{SESSION_ID_RULE}.", schema_extra={"pattern": SESSION_ID})
]


def _new(request: AnyRequest) -> NewSession:
    return NewSession(
        agent_id=agent_header(request) or DEFAULT_AGENT_ID, user_id=user_header(request)
    )


def _check_id(sid: str) -> None:
    """The service's own check lets a final line break through; this one does not."""
    if not _SESSION_ID.match(sid):
        message = f"session_id must be {SESSION_ID_RULE}, not {sid[:70]!r}"
        raise SurfaceError("invalid", "INVALID_ARGUMENT", message, {"field": "session_id"})


def _already_exists(sid: str) -> SurfaceError:
    return SurfaceError("conflict", "ALREADY_EXISTS", f"Session '{sid}' already exists", {})


@post(
    "/",
    status_code=200,
    summary="Create a session",
    opt={"statuses": (409,), "body_required": False},
)
async def create_session(
    request: AnyRequest,
    service: ConversationService,
    principal: str,
    data: CreateSessionRequest | None = None,
) -> Envelope[Created]:
    """``X-OpenViking-Agent`` picks the Parley agent (default: ``default``). An id in use,
    by this key or another, is refused and never overwritten. No body: a new id."""
    sid = (data or CreateSessionRequest()).session_id
    if sid is not None:
        _check_id(sid)
    try:
        session = await service.create_session(principal, _new(request), sid, exclusive=True)
    except Conflict:
        raise _already_exists(sid or "") from None
    return ok(Created(session.session_id, user_of(request, principal, session.user_id)))


@get("/", summary="The key's sessions, newest first")
async def list_sessions(service: ConversationService, principal: str) -> Envelope[list[Listed]]:
    sessions = await every_item(
        lambda cursor: service.list_sessions(principal, SessionQuery(limit=100, cursor=cursor))
    )
    return ok([Listed(s.session_id, f"viking://session/{s.session_id}") for s in sessions])


async def _detail(
    request: AnyRequest, service: ConversationService, principal: str, sid: str
) -> Envelope[SessionDetail]:
    transcript = await service.transcript(principal, sid)
    user = user_of(request, principal, transcript.session.user_id)
    return ok(session_detail(transcript, user))


@get("/{session_id:str}", summary="A session's counters; missing: 200 with status error")
async def get_session(
    session_id: str,
    request: AnyRequest,
    service: ConversationService,
    principal: str,
    auto_create: Annotated[
        bool, Parameter(description=f"Create it if missing; its id must then be {SESSION_ID_RULE}.")
    ] = False,
) -> Envelope[SessionDetail]:
    if auto_create:
        _check_id(session_id)
        await service.get_or_create_session(principal, session_id, _new(request))
    try:
        return await _detail(request, service, principal, session_id)
    except NotFound as error:
        if error.resource != "session":
            raise
        return Envelope(status="error", result=None, error=session_not_found(session_id))


@delete("/{session_id:str}", status_code=200, summary="Delete a session and all it holds")
async def delete_session(
    session_id: str, service: ConversationService, principal: str
) -> Envelope[Deleted]:
    if not await service.delete_session(principal, session_id):
        await service.get_session(principal, session_id)  # raises NotFound
    return ok(Deleted(session_id))


def _imported(message: AddMessageRequest) -> ImportedMessage:
    """``parts`` wins over ``content``; only text parts are modelled."""
    if message.parts is not None:
        if any(p.type != "text" for p in message.parts):
            raise SurfaceError(
                "invalid", "INVALID_ARGUMENT", "only text parts are supported", {"field": "parts"}
            )
        text = "\n".join(p.text or "" for p in message.parts)
    elif message.content is not None:
        text = message.content
    else:
        raise SurfaceError(
            "invalid", "INVALID_ARGUMENT", "Either 'content' or 'parts' must be provided", {}
        )
    return ImportedMessage(role=message.role, text=text)


async def _import(
    request: AnyRequest,
    service: ConversationService,
    principal: str,
    sid: str,
    messages: list[ImportedMessage],
) -> Session:
    """Checked first, so a refused request creates no session; then auto-created."""
    _check_id(sid)
    service.check_messages(messages)
    await service.get_or_create_session(principal, sid, _new(request))
    return await service.import_messages(principal, sid, messages)


async def _live_count(service: ConversationService, principal: str, sid: str) -> int:
    return len((await service.transcript(principal, sid)).live)


@post(
    "/{session_id:str}/messages",
    status_code=200,
    summary="Add a message; no model run",
    opt={"statuses": (409,)},
)
async def add_message(
    session_id: NewSessionId,
    data: Message,
    request: AnyRequest,
    service: ConversationService,
    principal: str,
) -> Envelope[Added]:
    await _import(request, service, principal, session_id, [_imported(data)])
    return ok(Added(session_id, await _live_count(service, principal, session_id)))


@post(
    "/{session_id:str}/messages/batch",
    status_code=200,
    summary="Add up to 100 messages",
    opt={"statuses": (409,)},
)
async def add_messages(
    session_id: NewSessionId,
    data: BatchMessagesRequest,
    request: AnyRequest,
    service: ConversationService,
    principal: str,
) -> Envelope[AddedBatch]:
    messages = [_imported(m) for m in data.messages]
    await _import(request, service, principal, session_id, messages)
    count = await _live_count(service, principal, session_id)
    return ok(AddedBatch(session_id, count, len(messages)))


@post(
    "/{session_id:str}/commit",
    status_code=200,
    summary="Archive and summarise old messages",
    opt={"statuses": (409,), "body_required": False},
)
async def commit_session(
    session_id: str,
    service: ConversationService,
    principal: str,
    data: CommitRequest | None = None,
) -> CommitEnvelope:
    """Done before answering; there is no background task (memory extraction is not built),
    so ``task_id`` names the commit only."""
    keep = (data or CommitRequest()).keep_recent_count
    archive = await service.commit(principal, session_id, keep)
    if archive is None:
        result = Committed(session_id, "accepted", False, reason="all_within_keep_window")
    else:
        uri = archive_uri(session_id, archive.number)
        result = Committed(session_id, "accepted", True, task_id=uuid.uuid4().hex, archive_uri=uri)
    return CommitEnvelope(result)


@get("/{session_id:str}/context", summary="What the next exchange would send, within budget")
async def get_context(
    session_id: str,
    service: ConversationService,
    principal: str,
    token_budget: Annotated[int, Parameter(schema_extra={"minimum": 0})] = 128_000,
) -> Envelope[SessionContextOut]:
    """A negative ``token_budget`` is refused: 400 ``INVALID_ARGUMENT``."""
    if token_budget < 0:
        raise SurfaceError(
            "invalid",
            "INVALID_ARGUMENT",
            "token_budget must be greater than or equal to 0",
            {"field": "token_budget", "value": token_budget},
        )
    return ok(context_out(await service.context(principal, session_id, token_budget)))


@get("/{session_id:str}/archives/{archive_id:str}", summary="One archive; missing: 200, error")
async def get_archive(
    session_id: str,
    archive_id: Annotated[str, Parameter(description="archive_001, archive_002, ...")],
    service: ConversationService,
    principal: str,
) -> Envelope[ArchiveOut]:
    transcript = await service.transcript(principal, session_id)
    match = _ARCHIVE.match(archive_id)
    number = int(match[1]) if match else 0
    for archive in transcript.archives:
        if archive.number == number:
            return ok(archive_out(archive, transcript))
    missing = ErrorInfo("NOT_FOUND", f"Archive {archive_id} not found")
    return Envelope(status="error", result=None, error=missing)


def sessions_router(prefix: str, dependencies: Dependencies) -> Router:
    return Router(
        path=f"{prefix}/sessions",
        route_handlers=[
            create_session,
            list_sessions,
            get_session,
            delete_session,
            add_message,
            add_messages,
            commit_session,
            get_context,
            get_archive,
        ],
        dependencies=dependencies,
        tags=["openviking"],
    )
