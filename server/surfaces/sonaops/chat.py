"""``/v1/chat``: create a conversation, and stream a turn of it (or resume one) as SSE.

A conversation is an engine session: its ``conversationId`` is the session id the native
API shows under ``/v1/sessions``. A POST to ``/stream`` with ``Last-Event-ID`` (as
fetch-event-source sends when it reconnects) resumes the exchange that event belongs to,
from the event after it, instead of starting a new turn.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Router, post
from litestar.status_codes import HTTP_200_OK
from litestar.types import ASGIApp, Dependencies

from server.metrics import MetricsExporter
from server.streaming import EVENT_STREAM, EVENT_STREAM_HEADERS, OpenStreams
from server.surfaces.sonaops.bodies import read_body, required_id, required_text
from server.surfaces.sonaops.callers import header
from server.surfaces.sonaops.envelope import Envelope, ok, trace_id_of
from server.surfaces.sonaops.errors import invalid
from server.surfaces.sonaops.stream import Reply, is_event_id, no_frames, reply_frames
from server.surfaces.sonaops.wire import Conversation, ConversationBody, StreamBody
from streams.limits import check_user_id
from streams.service import ConversationService
from streams.types import NewSession, Turn
from streams.watch import Watch


def user_of(request: Request[Any, Any, Any]) -> str | None:
    """``X-User-ID``: the end user the conversation is for (signed, when the key signs)."""
    user_id = header(request, "X-User-ID")
    try:
        if user_id is not None:
            check_user_id(user_id, "X-User-ID")
    except ValueError as error:
        raise invalid(str(error)) from None
    return user_id


@post(
    "/conversation",
    summary="Create a conversation with an agent",
    status_code=HTTP_200_OK,
    opt={"body": ConversationBody, "body_required": False},
)
async def create_conversation(
    request: Request[Any, Any, Any], service: ConversationService, principal: str
) -> Envelope[Conversation]:
    body = await read_body(request, ConversationBody)
    agent_id = required_id(body.agent_id, "agentId")
    new = NewSession(agent_id=agent_id, user_id=user_of(request))
    session = await service.create_session(principal, new)
    return ok(request.scope, Conversation(conversation_id=session.session_id, agent_id=agent_id))


@post(
    "/stream",
    summary="Send a turn and stream the reply (SSE), or resume one",
    status_code=HTTP_200_OK,
    opt={"body": StreamBody, "body_required": False, "streams": EVENT_STREAM},
)
async def stream(
    request: Request[Any, Any, Any],
    service: ConversationService,
    principal: str,
    open_streams: OpenStreams,
    exporter: MetricsExporter,
) -> ASGIApp:
    body = await read_body(request, StreamBody)
    agent_id = required_id(body.agent_id, "agentId")
    sid = required_id(body.conversation_id, "conversationId")
    text = required_text(body.text, "text")
    session = await service.get_session(principal, sid)
    if session.agent_id != agent_id:
        raise invalid(f"agentId {agent_id} is not the agent of conversation {sid}")
    watch = await _watch(request, service, principal, sid, text)
    if watch is None:
        frames = no_frames()
    else:
        reply = Reply(sid, watch.xid, trace_id_of(request.scope))
        frames = reply_frames(watch, reply, exporter.metrics.delivered)
    return open_streams.respond(frames, headers=EVENT_STREAM_HEADERS)


async def _watch(
    request: Request[Any, Any, Any],
    service: ConversationService,
    principal: str,
    sid: str,
    text: str,
) -> Watch | None:
    """A new turn; or, with ``Last-Event-ID``, the rest of the exchange it belongs to (None:
    the client has it all). The reply goes on if the client drops, so it can resume."""
    after = header(request, "Last-Event-ID")
    if after is None:
        return await service.streaming_continue(principal, sid, Turn(text=text))
    if not is_event_id(after):
        raise invalid("Last-Event-ID must be an event id this server sent, like 1700000000000-0")
    return await service.watch(principal, sid, after)


def chat_router(dependencies: Dependencies) -> Router:
    return Router(
        path="/v1/chat",
        route_handlers=[create_conversation, stream],
        dependencies=dependencies,
        tags=["sonaops"],
    )
