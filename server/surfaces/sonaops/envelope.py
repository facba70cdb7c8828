"""Sonaops's envelope, on every answer: ``{code, success, message, data, traceId, timestamp}``.

``traceId`` doubles as the request id: the one the app already gave the request when it is
32 characters long (a client's ``X-Request-ID`` of that length is echoed), else a fresh one
kept on the request, so every answer and frame of one request carries the same id.
``timestamp`` is epoch milliseconds as a string, as Sonaops sends it.
"""

from __future__ import annotations

import uuid
from typing import Any, Generic, TypeVar

import msgspec

from server.request_id import request_id_of
from streams.clock import now_ms

T = TypeVar("T")
OK = 10200
OK_MESSAGE = "OK"
_TRACE_LENGTH = 32
_STATE_KEY = "sonaops.trace_id"


class Envelope(msgspec.Struct, Generic[T], rename="camel", kw_only=True):
    code: int
    success: bool
    message: str
    data: T | None
    trace_id: str
    timestamp: str


class Head(msgspec.Struct, kw_only=True):
    """An envelope without its request's ``traceId`` and ``timestamp``: what a stream frame
    renders once per event for every watcher (see ``stream.py``)."""

    code: int
    success: bool
    message: str
    data: Any


def trace_id_of(scope: Any) -> str:
    state = scope.setdefault("state", {})
    trace = state.get(_STATE_KEY)
    if trace is None:
        given = request_id_of(scope)
        trace = state[_STATE_KEY] = given if len(given) == _TRACE_LENGTH else uuid.uuid4().hex
    return str(trace)


def stamp(ms: int | None = None) -> str:
    return str(now_ms() if ms is None else ms)


def ok(scope: Any, data: T) -> Envelope[T]:
    return Envelope(
        code=OK,
        success=True,
        message=OK_MESSAGE,
        data=data,
        trace_id=trace_id_of(scope),
        timestamp=stamp(),
    )


def failure(scope: Any, code: int, message: str) -> Envelope[None]:
    return Envelope(
        code=code,
        success=False,
        message=message,
        data=None,
        trace_id=trace_id_of(scope),
        timestamp=stamp(),
    )
