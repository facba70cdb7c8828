"""Every Problem in Sonaops's envelope: business errors are HTTP 200 with ``success: false``
and a 10xxx code; authentication failures are 401 (10401) and an unreachable Redis is 503
(10503). Protocol errors (no route, 405, 406, 413, 415, 431 for oversized headers) keep their
status, their code being 10000 + status. On ``/v1/chat/stream`` an HTTP 200 error is one SSE
frame, so an event-stream client reads it like any other frame.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response

from server.streaming import EVENT_STREAM_HEADERS
from server.surfaces.errors import Problem, SurfaceError
from server.surfaces.sonaops.envelope import failure
from server.surfaces.sonaops.frames import envelope_frame
from streams.errors import NotFound

STREAM_PATH = "/v1/chat/stream"
EVENT_STREAM = "text/event-stream"  # Litestar adds the charset
BUSY_MESSAGE = "a reply is already running for this conversation"
CODES = {
    "invalid": 10400,
    "unauthorized": 10401,
    "forbidden": 10403,
    "not_found": 10404,
    "method_not_allowed": 10405,
    "not_acceptable": 10406,
    "busy": 10409,
    "not_running": 10409,
    "conflict": 10409,
    "too_large": 10413,
    "unsupported_media_type": 10415,
    "rate_limited": 10429,
    "quota_exceeded": 10430,
    "headers_too_large": 10431,
    "internal": 10500,
    "unavailable": 10503,
}
# Kinds answered with their own HTTP status; every other kind is a business error (200).
_HTTP_KINDS = frozenset(
    {
        "unauthorized",
        "forbidden",
        "method_not_allowed",
        "not_acceptable",
        "too_large",
        "unsupported_media_type",
        "headers_too_large",
        "unavailable",
    }
)
_FIXED = {
    "rate_limited": "Too many requests, please try again later",
    "quota_exceeded": "API key usage limit reached",
    "busy": BUSY_MESSAGE,
    "unavailable": "Service temporarily unavailable, please try again later",
}
_RESOURCES = {
    "agent": "Agent not found",
    "agent_version": "Agent not found",
    "session": "Conversation not found",
    "exchange": "Message not found",
}
# The engine's field names, as Sonaops calls them.
LABELS = {"session_id": "conversationId", "agent_id": "agentId", "input_text": "text"}


def invalid(message: str) -> SurfaceError:
    return SurfaceError("invalid", "invalid", message, {})


def unauthorized(message: str) -> SurfaceError:
    return SurfaceError("unauthorized", "unauthorized", message, {})


def http_status(problem: Problem) -> int:
    if problem.kind in _HTTP_KINDS:
        return problem.status
    if problem.kind == "not_found" and problem.error is None and not problem.own:
        return 404  # a path Sonaops does not have, not a thing it could not find
    return 200


def message_of(problem: Problem) -> str:
    if problem.own:
        return problem.message
    fixed = _FIXED.get(problem.kind)
    if fixed is not None:
        return fixed
    error = problem.error
    if isinstance(error, NotFound):
        return _RESOURCES.get(error.resource, error.message)
    return error.describe(LABELS) if error is not None else problem.message


def render(request: Request[Any, Any, Any], problem: Problem) -> Response[Any]:
    status = http_status(problem)
    body = failure(request.scope, CODES.get(problem.kind, 10500), message_of(problem))
    headers = dict(problem.headers)
    if status == 200 and request.url.path == STREAM_PATH:
        return _event_stream(envelope_frame(body), headers)
    return Response(body, status_code=status, headers=headers or None)


def _event_stream(frame: bytes, headers: dict[str, str]) -> Response[bytes]:
    """The error as the stream's one frame; the stream then ends."""
    for name, value in EVENT_STREAM_HEADERS:
        if name != b"content-type":
            headers[name.decode()] = value.decode()
    return Response(frame, status_code=200, headers=headers, media_type=EVENT_STREAM)
