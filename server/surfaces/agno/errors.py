"""Agno's error bodies, FastAPI's: ``{"detail": "..."}``, or for a request that fails
validation, 422 ``{"detail": [{loc, msg, type}, ...]}`` as pydantic lists its errors.

Messages are Agno's own where it has one (``Agent not found``, ``Session with id '…' not
found``), so a client that shows or matches them sees what AgentOS would say.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request, Response

from server.surfaces.errors import Problem, SurfaceError, readable
from streams.errors import NotFound

VALIDATION = "validation_error"
LABELS = {
    "exchange_id": "run_id",
    "input_text": "message",
    "title": "session_name",
    "state": "session_state",
}
# Handler parameters whose Python name is not Agno's.
_PARAMETERS = {"session_type": "type"}
_MISSING = re.compile(r"^Object missing required field `([^`]+)`")


class ErrorBody(msgspec.Struct):
    detail: str


class FieldError(msgspec.Struct):
    loc: list[str | int]
    msg: str
    type: str


class ValidationBody(msgspec.Struct):
    detail: list[FieldError]


def invalid(loc: list[str | int], msg: str, kind: str) -> SurfaceError:
    """A validation error Litestar cannot find by itself (form fields), in Agno's 422."""
    return SurfaceError("invalid", VALIDATION, msg, {"errors": [FieldError(loc, msg, kind)]})


def bad_request(message: str) -> SurfaceError:
    """Agno's 400 ``HTTPException``: the request is well formed but cannot be done."""
    return SurfaceError("invalid", "bad_request", message, {})


def no_session(session_id: str) -> SurfaceError:
    return SurfaceError("not_found", "not_found", f"Session with id '{session_id}' not found", {})


def render(request: Request[Any, Any, Any], problem: Problem) -> Response[Any]:
    if problem.kind == "invalid" and problem.code in (VALIDATION, "invalid_request"):
        return Response(ValidationBody(_field_errors(problem)), status_code=422)
    body = ErrorBody(_detail(request, problem))
    return Response(body, status_code=problem.status, headers=problem.headers or None)


def _field_errors(problem: Problem) -> list[FieldError]:
    if problem.own:
        return list(problem.details["errors"])
    fields = problem.details.get("fields") or []
    errors = [_field_error(f) for f in fields if isinstance(f, dict)]
    return errors or [FieldError(["body"], problem.message, "value_error")]


def _field_error(field: dict[str, Any]) -> FieldError:
    """Litestar's ``{key, message, source}`` as pydantic's ``{loc, msg, type}``."""
    where = field.get("source") or "body"
    source = str(getattr(where, "value", where))  # Litestar's ParamType, or a str
    key = str(field.get("key") or "")
    message = str(field.get("message") or "is not valid")
    missing = _MISSING.match(message)
    if message == f"'{key}'" or missing:  # no body at all, or a field left out of it
        loc: list[str | int] = [source, missing[1]] if missing else [source]
        return FieldError(loc, "Field required", "missing")
    name = _PARAMETERS.get(key, key).removesuffix("[...]")
    loc = [source] if key == "data" else [source, name]
    return FieldError(loc, readable(message), _error_type(message))


def _error_type(message: str) -> str:
    kinds = [
        ("Invalid enum value", "enum"),
        ("Expected `int`, got", "int_parsing"),
        ("Expected `str`, got", "string_type"),
        ("Expected `object`, got", "dict_type"),
        ("Expected `array`, got", "list_type"),
        ("Expected `bool`, got", "bool_parsing"),
        ("of length <=", "too_long"),
        ("of length >=", "too_short"),
        ("matching regex", "string_pattern_mismatch"),
        (">=", "greater_than_equal"),
    ]
    return next((kind for text, kind in kinds if text in message), "value_error")


def _detail(request: Request[Any, Any, Any], problem: Problem) -> str:
    if problem.own:
        return problem.message
    error = problem.error
    params = request.scope.get("path_params") or {}
    sid = params.get("session_id") or problem.details.get("session_id")
    if isinstance(error, NotFound):
        if error.resource in ("agent", "agent_version"):
            return "Agent not found"
        if error.resource == "exchange":
            run = params.get("run_id") or problem.details.get("exchange_id")
            return f"Run with ID {run} not found in session {sid}"
        return f"Session with id '{sid}' not found"
    if problem.kind == "busy":
        return f"A run is already in progress in session {sid}"
    if problem.kind == "not_found" and error is None and problem.message.startswith("no route"):
        return "Not Found"  # Starlette's words for a path nothing serves
    if problem.kind == "method_not_allowed":
        return "Method Not Allowed"
    return error.describe(LABELS) if error else problem.message
