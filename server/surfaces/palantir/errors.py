"""Palantir's error envelope, ``{errorCode, errorName, errorInstanceId, parameters}``.

The SDK raises a class of its own for an ``errorName`` the endpoint declares, when
``parameters`` hold that error's required keys; otherwise it falls back on the status. So
each engine error is given the Palantir name and parameters that say the same thing; the
handlers raise ``SurfaceError`` for the errors only Palantir has (``InvalidAgentVersion``).
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
from litestar import Request, Response

from server.surfaces.errors import Problem
from server.surfaces.palantir.ids import agent_rid, session_rid, trace_id, version_string
from streams.errors import NotFound

# Palantir's error codes by status; the SDK dispatches on errorName and status only.
_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHORIZED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "INVALID_ARGUMENT",
    406: "INVALID_ARGUMENT",
    409: "CONFLICT",
    413: "REQUEST_ENTITY_TOO_LARGE",
    415: "INVALID_ARGUMENT",
    429: "TOO_MANY_REQUESTS",
    431: "INVALID_ARGUMENT",
    503: "SERVICE_UNAVAILABLE",
}
_GENERIC = {
    400: "Default:InvalidArgument",
    401: "Default:Unauthorized",
    403: "Default:PermissionDenied",
    404: "Default:NotFound",
    405: "Default:MethodNotAllowed",
    406: "Default:NotAcceptable",
    409: "Default:Conflict",
    413: "Default:RequestEntityTooLarge",
    415: "Default:UnsupportedMediaType",
    429: "Default:TooManyRequests",
    431: "Default:RequestHeaderFieldsTooLarge",
    503: "Default:ServiceUnavailable",
}
# The engine's field names, as Palantir's bodies and parameters call them.
LABELS = {"input_text": "userInput.text", "parameters": "parameterInputs", "cursor": "pageToken"}
# Named errors whose status differs from the engine kind's.
_STATUS = {"CancelSessionFailedMessageNotInProgress": 400, "SessionTraceIdAlreadyExists": 400}


class ErrorBody(msgspec.Struct, rename="camel"):
    error_code: str
    error_name: str
    error_instance_id: str
    parameters: dict[str, Any]


def render(request: Request[Any, Any, Any], problem: Problem) -> Response[ErrorBody]:
    name, parameters = _named(request, problem)
    status = _STATUS.get(name, problem.status)
    body = ErrorBody(
        error_code=_CODES.get(status, "INTERNAL"),
        error_name=name,
        error_instance_id=str(uuid.uuid4()),
        parameters=parameters,
    )
    return Response(body, status_code=status, headers=problem.headers or None)


def _named(request: Request[Any, Any, Any], problem: Problem) -> tuple[str, dict[str, Any]]:
    if problem.own:
        return problem.code, problem.details
    details = problem.details
    params = request.scope.get("path_params") or {}
    agent = agent_rid(details["agent_id"]) if "agent_id" in details else params.get("agent_rid")
    sid = details.get("session_id")
    session = session_rid(sid) if sid else params.get("session_rid")
    ids = {k: v for k, v in (("agentRid", agent), ("sessionRid", session)) if v}
    xid = details.get("exchange_id")
    error = problem.error
    if isinstance(error, NotFound):
        if error.resource == "agent":
            return "AgentNotFound", ids
        if error.resource == "agent_version":
            version = version_string(int(details.get("agent_version") or 0))
            return "AgentVersionNotFound", {**ids, "agentVersionString": version}
        if error.resource == "exchange":
            return "SessionTraceNotFound", {**ids, "sessionTraceId": trace_id(str(xid))}
        return "SessionNotFound", ids
    if problem.kind == "not_running":
        return "CancelSessionFailedMessageNotInProgress", {**ids, "messageId": xid}
    if problem.kind == "conflict" and xid:
        return "SessionTraceIdAlreadyExists", {**ids, "sessionTraceId": xid}
    if problem.kind in ("rate_limited", "quota_exceeded"):
        return "RateLimitExceeded", {**ids, "details": problem.message}
    if problem.code == "context_too_large":
        return "ContextSizeExceededLimit", {**ids, "details": problem.message}
    generic = _GENERIC.get(problem.status, "Default:Internal")
    message = error.describe(LABELS) if error is not None else problem.message
    return generic, {**ids, "message": message, "code": problem.code}
