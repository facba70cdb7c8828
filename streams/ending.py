"""Storing an exchange's end: one FINISH script call, shared by runners and the reaper."""

from __future__ import annotations

from typing import Any

import msgspec

from streams.config import EngineConfig
from streams.events import ErrorData
from streams.keys import Keys
from streams.records import usage_args
from streams.scripts import FINISH, Script
from streams.types import Exchange

FINISH_SCRIPT = Script(FINISH)


def finish_keys(keys: Keys, sid: str, xid: str) -> list[str]:
    return [
        keys.session(sid),
        keys.exchange(sid, xid),
        keys.log(sid, xid),
        keys.channel(sid),
        keys.cancel(sid),
        keys.lock(sid),
        keys.exchanges(sid),
    ]


def end_event(exchange: Exchange) -> tuple[str, bytes]:
    """The end event's kind and payload: ``done`` with the exchange, or ``error`` around it."""
    if exchange.status != "failed":
        return "done", msgspec.json.encode(exchange)
    error = exchange.error
    data = ErrorData(
        code=error.code if error else "internal_error",
        message=error.message if error else "the exchange failed",
        retryable=error.retryable if error else False,
        exchange=exchange,
    )
    return "error", msgspec.json.encode(data)


def finish_args(
    exchange: Exchange, unwritten: list[int], completed_ms: int, config: EngineConfig
) -> list[Any]:
    """FINISH's arguments; ``unwritten`` are the usage increments the session still lacks."""
    kind, payload = end_event(exchange)
    ttl = config.session_ttl_seconds
    return [
        exchange.exchange_id,
        kind,
        payload,
        exchange.response.text,
        exchange.status,
        exchange.finish_reason or "",
        msgspec.json.encode(exchange.error) if exchange.error else "",
        *usage_args(exchange.usage),
        *unwritten,
        completed_ms,
        ttl,
        min(config.replay_retention_seconds, ttl),
        completed_ms + ttl * 1000,
    ]
