"""The native error envelope: ``{"error": {code, message, details?}, "requestId"}``."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    SerializationException,
    ValidationException,
)
from litestar.types import ExceptionHandlersMap

from server.request_id import request_id_of
from streams.errors import (
    Conflict,
    EngineError,
    InvalidInput,
    NotFound,
    NotRunning,
    SessionBusy,
    Unavailable,
)

log = logging.getLogger("parley.http")

_STATUS: dict[type[EngineError], int] = {
    InvalidInput: 400,
    NotFound: 404,
    SessionBusy: 409,
    NotRunning: 409,
    Conflict: 409,
    Unavailable: 503,
}

_HTTP_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


class ErrorDetail(msgspec.Struct, omit_defaults=True):
    code: str
    message: str
    details: dict[str, Any] | None = None


class ErrorBody(msgspec.Struct, rename="camel"):
    error: ErrorDetail
    request_id: str


def error_response(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[ErrorBody]:
    body = ErrorBody(ErrorDetail(code, message, details), request_id_of(request.scope))
    return Response(body, status_code=status, headers=headers)


def _engine_error(request: Request[Any, Any, Any], exc: EngineError) -> Response[ErrorBody]:
    status = next((s for t, s in _STATUS.items() if isinstance(exc, t)), 500)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Unavailable) else None
    if status == 503:
        log.warning(
            "unavailable",
            extra={
                "reason": exc.message,
                "cause": f"{type(exc.__cause__).__name__}: {exc.__cause__}",
            },
        )
    return error_response(request, status, exc.code, exc.message, exc.details, headers)


def _validation_error(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[ErrorBody]:
    problems = exc.extra if isinstance(exc.extra, list) else []
    fields = [p for p in problems if isinstance(p, dict)]
    if fields:
        first = fields[0]
        where = first.get("key")
        text = first.get("message", "is not valid")
        message = text if where in (None, "", "data") else f"{where}: {text}"
    else:
        message = exc.detail or "the request is not valid"
    details = {"fields": fields} if fields else None
    return error_response(request, 400, "invalid_request", message, details)


def _http_error(request: Request[Any, Any, Any], exc: HTTPException) -> Response[ErrorBody]:
    status = exc.status_code
    code = _HTTP_CODES.get(status, "http_error")
    message = exc.detail
    if isinstance(exc, NotFoundException) and message == "Not Found":
        message = f"no route for {request.method} {request.url.path}"
    elif isinstance(exc.__cause__, SerializationException):
        # msgspec's own words ("Input data was truncated") do not say what was wrong.
        message = f"the request body is not valid JSON: {message}"
    elif status == 413:
        message = "the request body is larger than the server accepts"
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, NotAuthorizedException) else None
    return error_response(request, status, code, message, None, headers)


def _internal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return error_response(request, 500, "internal_error", "the server failed to handle this")


def exception_handlers() -> ExceptionHandlersMap:
    return {
        EngineError: _engine_error,
        ValidationException: _validation_error,
        HTTPException: _http_error,
        Exception: _internal_error,
    }
