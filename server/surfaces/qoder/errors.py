"""The error envelope of Anthropic's API, which Qoder's cloud sessions share:
``{"type": "error", "error": {"type", "message"}, "request_id"}``, and a ``request-id`` header.

The anthropic SDK picks its exception class by status (400 ``BadRequestError``, 404
``NotFoundError``, 409 ``ConflictError``, 429 ``RateLimitError``...); ``error.type`` names
the kind in Anthropic's words, with Qoder's ``conflict_error`` and ``feature_not_available``.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response

from server.request_id import request_id_of
from server.surfaces.errors import Problem, SurfaceError
from streams.errors import Archived

# The engine's field names, as this API calls them.
LABELS = {
    "session_id": "session_id",
    "exchange_id": "event_id",
    "agent_id": "agent",
    "agent_version": "agent.version",
    "input_text": "events[0].content",
    "cursor": "page",
}

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    406: "invalid_request_error",
    409: "conflict_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    431: "request_too_large",
    501: "feature_not_available",
    503: "overloaded_error",
}
_STATUS_OF_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "conflict_error": 409,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "feature_not_available": 501,
    "overloaded_error": 529,
}


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    """``details.error_code`` makes the SDK raise its specific class (say, 400 with
    ``environment_archived`` is ``BetaEnvironmentArchivedError``)."""

    type: str
    message: str
    param: str | None = None
    feature: str | None = None
    details: dict[str, Any] | None = None


class ErrorBody(msgspec.Struct):
    error: ErrorDetail
    request_id: str
    type: str = "error"


def api_error(error_type: str, message: str, **details: Any) -> SurfaceError:
    """An error in this API's own words; ``details`` may carry ``param``, ``feature`` or
    ``details`` (``{"error_code": ...}``)."""
    return SurfaceError("invalid", error_type, message, details)


def archived_error(error: Archived) -> SurfaceError:
    """A change refused because its target is archived, with ``details.error_code``
    (``environment_archived``, ``agent_archived``) as Anthropic's API answers it."""
    return api_error("invalid_request_error", error.message, details={"error_code": error.code})


def render(request: Request[Any, Any, Any], problem: Problem) -> Response[ErrorBody]:
    if problem.own:
        status = _STATUS_OF_TYPE.get(problem.code, 400)
        detail = ErrorDetail(problem.code, problem.message, **problem.details)
    else:
        status = problem.status
        message = problem.error.describe(LABELS) if problem.error else problem.message
        field = problem.details.get("field")
        param = LABELS.get(field, field) if isinstance(field, str) else None
        detail = ErrorDetail(_TYPES.get(status, "api_error"), message, param)
    rid = "req_" + request_id_of(request.scope)
    headers = {**problem.headers, "request-id": rid}
    if status == 501:
        # The SDK retries any 5xx unless told not to; a feature Parley lacks stays lacking.
        headers["x-should-retry"] = "false"
    return Response(ErrorBody(detail, rid), status_code=status, headers=headers)
