"""The native error envelope: ``{"error": {code, message, details?}, "requestId"}``."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response

from server.request_id import request_id_of
from server.surfaces.errors import Problem

# The engine's field names, as the native API calls them.
LABELS = {
    "session_id": "conversationId",
    "exchange_id": "messageId",
    "agent_id": "agentId",
    "agent_version": "agentVersion",
    "input_text": "userInput.text",
    "parameters": "parameters",
}


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorBody(msgspec.Struct, rename="camel"):
    error: ErrorDetail
    request_id: str


def _details(details: dict[str, Any]) -> dict[str, Any] | None:
    if not details:
        return None
    named = {LABELS.get(key, key): value for key, value in details.items()}
    if isinstance(named.get("field"), str):
        named["field"] = LABELS.get(named["field"], named["field"])
    return named


def render(request: Request[Any, Any, Any], problem: Problem) -> Response[ErrorBody]:
    message = problem.error.describe(LABELS) if problem.error else problem.message
    detail = ErrorDetail(problem.code, message, _details(problem.details))
    body = ErrorBody(detail, request_id_of(request.scope))
    return Response(body, status_code=problem.status, headers=problem.headers or None)
