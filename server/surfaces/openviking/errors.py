"""OpenViking's envelope for errors: ``{"status": "error", "result": null, "error": {code,
message, details}, "telemetry": null, "profile": null}`` with its code-to-status table.

A request that fails validation is 400 ``INVALID_ARGUMENT`` with ``details.validation_errors``
and no null keys, as its FastAPI handler answers; Litestar's own HTTP errors get the code its
Starlette handler gives the status (``UNKNOWN`` for those it does not map, such as 405, 413).
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response

from server.surfaces.errors import Problem
from streams.errors import NotFound

LABELS = {"input_text": "content", "exchange_id": "message_id"}

STATUS = {
    "INVALID_ARGUMENT": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "CONFLICT": 409,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
}
_CODES = {
    "invalid": "INVALID_ARGUMENT",
    "unauthorized": "UNAUTHENTICATED",
    "forbidden": "PERMISSION_DENIED",
    "not_found": "NOT_FOUND",
    "busy": "CONFLICT",
    "not_running": "CONFLICT",
    "conflict": "CONFLICT",
    "rate_limited": "RESOURCE_EXHAUSTED",
    "quota_exceeded": "RESOURCE_EXHAUSTED",
    "unavailable": "UNAVAILABLE",
    "internal": "INTERNAL",
}


class ErrorInfo(msgspec.Struct):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorEnvelope(msgspec.Struct):
    """Nulls included, as pydantic's ``model_dump()`` writes them."""

    error: ErrorInfo
    status: str = "error"
    result: None = None
    telemetry: None = None
    profile: None = None


class BareErrorEnvelope(msgspec.Struct, omit_defaults=True):
    """The validation handler's body: ``exclude_none``."""

    status: str
    error: ErrorInfo


def session_not_found(sid: str) -> ErrorInfo:
    """What ``GET /sessions/{id}`` says of a missing session (v0.3.24, with HTTP 200)."""
    return ErrorInfo("NOT_FOUND", f"Session {sid} not found")


def render(request: Request[Any, Any, Any], problem: Problem) -> Response[Any]:
    if problem.own:
        info = ErrorInfo(problem.code, problem.message, problem.details or None)
        return _respond(info, STATUS.get(problem.code, 500), problem)
    if problem.kind == "invalid" and problem.code == "invalid_request":
        errors = problem.details.get("fields") or [{"message": problem.message}]
        info = ErrorInfo("INVALID_ARGUMENT", problem.message, {"validation_errors": errors})
        return Response(BareErrorEnvelope("error", info), status_code=400)
    status = problem.status
    code = _CODES.get(str(problem.kind), "INTERNAL" if status >= 500 else "UNKNOWN")
    return _respond(_info(problem, code), status, problem)


def _info(problem: Problem, code: str) -> ErrorInfo:
    error = problem.error
    if isinstance(error, NotFound) and error.resource == "session":
        sid = str(error.details.get("session_id", ""))
        return ErrorInfo(code, f"Session not found: {sid}", {"type": "session", "resource": sid})
    message = error.describe(LABELS) if error else problem.message
    details = {LABELS.get(k, k): v for k, v in problem.details.items()} or None
    if details and isinstance(details.get("field"), str):
        details["field"] = LABELS.get(details["field"], details["field"])
    return ErrorInfo(code, message, details)


def _respond(info: ErrorInfo, status: int, problem: Problem) -> Response[ErrorEnvelope]:
    return Response(ErrorEnvelope(info), status_code=status, headers=problem.headers or None)
