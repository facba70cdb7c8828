"""Listing sessions: the caller's sessions by creation time, in pages both clients follow.

The engine pages a principal's sessions by a keyset over creation time; this API adds the
filters the engine has no index for (``statuses[]``, archived), so a page is read on until
it is full. ``after_id`` / ``before_id`` start after or before a session; ``next_page``
goes on the way the listing went, from the creation time and id of the page's edge, so
sessions created or deleted meanwhile never make a reader skip or repeat one.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from server.surfaces.qoder.errors import api_error
from server.surfaces.qoder.ids import engine_session_id
from server.surfaces.qoder.listing import ListBody
from server.surfaces.qoder.session_wire import SessionBody, attributes_of, session_out
from streams.agent_store import RedisAgentCatalog
from streams.clock import now_ms
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


class _Edge(msgspec.Struct, array_like=True, forbid_unknown_fields=True):
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
        next_page = _encode(_Edge(forward, last.created_ms, last.session_id))
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
    order = "desc" if descending else "asc"
    cursor = None
    if edge is not None:
        cursor = encode_cursor(KeysetCursor("created", order, edge.created_ms, edge.sid))
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
    given = [
        (name, value)
        for name, value in (
            ("page", query.page),
            ("after_id", query.after_id),
            ("before_id", query.before_id),
        )
        if value is not None
    ]
    if len(given) > 1:
        names = " and ".join(name for name, _ in given)
        raise api_error(
            "invalid_request_error",
            f"give at most one of page, after_id and before_id, not {names}",
            param=given[1][0],
        )
    if not given:
        return None
    name, value = given[0]
    if name == "page":
        return _decode(value)
    session = await service.get_session(principal, engine_session_id(value))
    return _Edge(name == "after_id", session.created_ms, session.session_id)


def _encode(edge: _Edge) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode(edge)).decode().rstrip("=")


def _decode(raw: str) -> _Edge:
    try:
        padded = raw + "=" * (-len(raw) % 4)
        return msgspec.json.decode(base64.urlsafe_b64decode(padded), type=_Edge)
    except (binascii.Error, ValueError, msgspec.ValidationError):
        raise api_error(
            "invalid_request_error", "page is not a next_page this API gave", param="page"
        ) from None
