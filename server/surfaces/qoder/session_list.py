"""Listing sessions: the caller's sessions by creation time, in pages both clients follow.

The engine pages a principal's sessions by a keyset over creation time; this API adds the
filters the engine has no index for (``statuses[]``, archived), so a page is read on until
it is full. ``after_id`` / ``before_id`` start after or before a session of the caller's (an
unknown one is not found: a session's place is its creation time). ``next_page`` goes on the
way the listing went, from the creation time and id of the page's edge
(``after.<ms>.<id>`` or ``before.<ms>.<id>``), so sessions created or deleted meanwhile never
make a reader skip or repeat one; any text of that pattern is a position.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from litestar.params import Parameter

from server.surfaces.qoder.errors import api_error
from server.surfaces.qoder.ids import engine_session_id
from server.surfaces.qoder.listing import END, ID, ListBody, matching, one_of, shown
from server.surfaces.qoder.session_wire import SessionBody, attributes_of, session_out
from streams.agent_store import RedisAgentCatalog
from streams.clock import now_ms
from streams.errors import NotFound
from streams.paging import KeysetCursor, encode_cursor
from streams.service import ConversationService
from streams.types import Session, SessionQuery


@dataclass(frozen=True)
class ListQuery:
    limit: int
    page: str | None
    after_id: str | None
    before_id: str | None
    statuses: frozenset[str] | None
    include_archived: bool
    agent_id: str | None
    descending: bool


SESSION_PAGE_PATTERN = rf"^(?:(?:after|before)\.[0-9]{{1,16}}\.{ID})?{END}"
SESSION_ID_PATTERN = rf"^(?:sess_{ID})?{END}"
_PAGE_SHAPE = "a next_page this API gave (after.<ms>.<id> or before.<ms>.<id>)"
_ID_SHAPE = "a session id, sess_ and 1-64 letters, digits, '-' or '_'"

SessionPage = Annotated[
    str | None,
    Parameter(
        description="The next_page of the previous answer: after.<ms>.<id> or "
        "before.<ms>.<id>. Empty: none.",
        schema_extra={"pattern": SESSION_PAGE_PATTERN},
    ),
]
AfterSession = Annotated[
    str | None,
    Parameter(
        description="Sessions listed right after this one of yours (404 if you have none "
        "of that id). Empty: none.",
        schema_extra={"pattern": SESSION_ID_PATTERN},
    ),
]
BeforeSession = Annotated[
    str | None,
    Parameter(
        description="Sessions listed right before this one of yours (404 if you have none "
        "of that id). Empty: none.",
        schema_extra={"pattern": SESSION_ID_PATTERN},
    ),
]


@dataclass(frozen=True)
class _Edge:
    """Where a page starts: after (``forward``) or before this session."""

    forward: bool
    created_ms: int
    sid: str


async def list_sessions(
    service: ConversationService, agents: RedisAgentCatalog, principal: str, query: ListQuery
) -> ListBody[SessionBody]:
    edge = await _edge(service, principal, query)
    forward = edge is None or edge.forward
    found = await _read(service, principal, query, edge, _filter(query))
    more = len(found) > query.limit
    page = found[: query.limit]
    if not forward:
        page.reverse()
    now = now_ms()
    data = [session_out(s, await agents.resolve(s.agent_id, s.agent_version), now) for s in page]
    next_page = None
    if more and page:
        last = page[-1] if forward else page[0]
        direction = "after" if forward else "before"
        next_page = f"{direction}.{last.created_ms}.{last.session_id}"
    first_id = data[0].id if data else None
    last_id = data[-1].id if data else None
    return ListBody(data, first_id, last_id, more, next_page)


async def _read(
    service: ConversationService,
    principal: str,
    query: ListQuery,
    edge: _Edge | None,
    keep: Callable[[Session], bool],
) -> list[Session]:
    """Up to ``limit + 1`` kept sessions from ``edge``, in the direction it goes."""
    descending = query.descending if edge is None or edge.forward else not query.descending
    cursor = None
    if edge is not None:
        cursor = encode_cursor(KeysetCursor(edge.created_ms, edge.sid))
    found: list[Session] = []
    while len(found) <= query.limit:
        wanted = SessionQuery(
            agent_id=query.agent_id,
            descending=descending,
            limit=query.limit + 1 - len(found),
            cursor=cursor,
        )
        page = await service.list_sessions(principal, wanted)
        found += [s for s in page.items if keep(s)]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return found


def _filter(query: ListQuery) -> Callable[[Session], bool]:
    def keep(session: Session) -> bool:
        if query.statuses is not None and session.status not in query.statuses:
            return False
        return query.include_archived or attributes_of(session).archived_ms is None

    return keep


async def _edge(service: ConversationService, principal: str, query: ListQuery) -> _Edge | None:
    page = matching(query.page, "page", SESSION_PAGE_PATTERN, _PAGE_SHAPE)
    after_id = matching(query.after_id, "after_id", SESSION_ID_PATTERN, _ID_SHAPE)
    before_id = matching(query.before_id, "before_id", SESSION_ID_PATTERN, _ID_SHAPE)
    cursor = one_of(page=page, after_id=after_id, before_id=before_id)
    if cursor is None:
        return None
    name, value = cursor
    if name == "page":
        direction, created_ms, sid = value.split(".", 2)
        return _Edge(direction == "after", int(created_ms), sid)
    try:
        session = await service.get_session(principal, engine_session_id(value))
    except NotFound:
        raise api_error(
            "not_found_error",
            f"{name} {shown(value)} names no session of yours: page from an id a list gave",
            param=name,
        ) from None
    return _Edge(name == "after_id", session.created_ms, session.session_id)
