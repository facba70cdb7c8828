"""The one table every surface renders errors from: what went wrong, and its HTTP status.

An exception, whether the engine's or Litestar's own (validation, unknown route, 405, 413),
becomes a :class:`Problem`; the surface whose path was hit renders it in its own envelope.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from litestar import Request
from litestar.exceptions import (
    HTTPException,
    MethodNotAllowedException,
    NotAuthorizedException,
    NotFoundException,
    SerializationException,
    ValidationException,
)

from streams.errors import EngineError, ErrorKind, RateLimited, Unavailable
from streams.limits import CONTROLS_MESSAGE, NO_CONTROLS

log = logging.getLogger("parley.http")

ProblemKind = ErrorKind | str

STATUS: dict[str, int] = {
    "invalid": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "not_acceptable": 406,
    "busy": 409,
    "not_running": 409,
    "conflict": 409,
    "too_large": 413,
    "unsupported_media_type": 415,
    "rate_limited": 429,
    "quota_exceeded": 429,
    "headers_too_large": 431,
    "internal": 500,
    "unavailable": 503,
}
_KIND_OF_STATUS = {status: kind for kind, status in STATUS.items()}
_KIND_OF_STATUS[409] = "conflict"
_KIND_OF_STATUS[429] = "rate_limited"

# Codes of Litestar's own errors; an engine error carries its own code.
_HTTP_CODES = {
    "invalid": "invalid_request",
    "unauthorized": "unauthorized",
    "forbidden": "forbidden",
    "not_found": "not_found",
    "method_not_allowed": "method_not_allowed",
    "too_large": "body_too_large",
    "unsupported_media_type": "unsupported_media_type",
    "rate_limited": "rate_limited",
}
# msgspec gives up on JSON nested this deep (its limit is Python's recursion limit, less the
# stack already in use); any depth up to this one is always read.
JSON_DEPTH = 500
_LENGTH = re.compile(r"^Expected `str` of length <= (\d+)$")
_NO_CONTROLS = f"Expected `str` matching regex {NO_CONTROLS!r}"


@dataclass(frozen=True)
class Problem:
    """An error ready to render: ``details`` use the engine's field names."""

    kind: ProblemKind
    code: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    error: EngineError | None = None
    own: bool = False

    @property
    def status(self) -> int:
        return STATUS.get(self.kind, 500)


class SurfaceError(Exception):
    """An error a surface raises in its own words: ``code`` and ``details`` are its API's."""

    def __init__(self, kind: ProblemKind, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.problem = Problem(kind, code, message, details, own=True)


def problem_of(request: Request[Any, Any, Any], exc: Exception) -> Problem:
    if isinstance(exc, SurfaceError):
        return exc.problem
    if isinstance(exc, EngineError):
        return _engine_problem(exc)
    if isinstance(exc, ValidationException):
        return _validation_problem(exc)
    if isinstance(exc, HTTPException):
        return _http_problem(request, exc)
    if isinstance(exc, RecursionError) and "deserializing" in str(exc):
        return too_deep()
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return Problem("internal", "internal_error", "the server failed to handle this")


def too_deep() -> Problem:
    """msgspec's RecursionError for a body nested past what it reads, which Litestar (and a
    surface decoding its own bodies) lets through as if the server had failed."""
    message = (
        f"the JSON body nests deeper than this server reads: keep it under {JSON_DEPTH} levels"
    )
    return Problem("invalid", "invalid_request", message)


def readable(text: str) -> str:
    """msgspec's words for a broken length or character rule, as a sentence's end."""
    if text == _NO_CONTROLS:
        return CONTROLS_MESSAGE
    length = _LENGTH.match(text)
    return f"must be at most {length[1]} characters" if length else text


def _engine_problem(exc: EngineError) -> Problem:
    headers = {}
    if isinstance(exc, Unavailable):
        headers["Retry-After"] = str(exc.retry_after)
        cause = f"{type(exc.__cause__).__name__}: {exc.__cause__}"
        log.warning("unavailable", extra={"reason": exc.message, "cause": cause})
    elif isinstance(exc, RateLimited) and exc.retry_after:
        headers["Retry-After"] = str(exc.retry_after)
    return Problem(exc.kind, exc.code, exc.message, exc.details, headers, exc)


def _validation_problem(exc: ValidationException) -> Problem:
    problems = exc.extra if isinstance(exc.extra, list) else []
    fields = [p for p in problems if isinstance(p, dict)]
    if fields:
        first = fields[0]
        where = first.get("key")
        if first.get("message") == "'data'":  # Litestar's KeyError: the body is missing
            return Problem("invalid", "invalid_request", "this request needs a JSON body")
        text = readable(str(first.get("message", "is not valid")))
        message = text if where in (None, "", "data") else f"{where}: {text}"
    else:
        message = exc.detail or "the request is not valid"
    details = {"fields": fields} if fields else {}
    return Problem("invalid", "invalid_request", message, details)


def _http_problem(request: Request[Any, Any, Any], exc: HTTPException) -> Problem:
    kind = _KIND_OF_STATUS.get(exc.status_code, "internal")
    message = exc.detail
    headers = dict(exc.headers or {})
    if isinstance(exc, NotFoundException) and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    elif isinstance(exc, MethodNotAllowedException):
        message = f"{request.method} is not allowed on {request.url.path}"
    elif isinstance(exc.__cause__, SerializationException):
        # msgspec's own words ("Input data was truncated") do not say what was wrong.
        message = f"the request body is not valid JSON: {message}"
    elif kind == "too_large":
        message = "the request body is larger than the server accepts"
    if isinstance(exc, NotAuthorizedException):
        headers["WWW-Authenticate"] = "Bearer"
    return Problem(kind, _HTTP_CODES.get(kind, "http_error"), message, headers=headers)
