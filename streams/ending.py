"""Storing an exchange's end: one FINISH script call, shared by runners and the reaper."""

from __future__ import annotations

from typing import Any

import msgspec

from streams.config import EngineConfig
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
        keys.archives(sid),
    ]


def finish_args(
    exchange: Exchange, unwritten: list[int], completed_ms: int, config: EngineConfig
) -> list[Any]:
    """FINISH's arguments; ``unwritten`` are the usage increments the session still lacks."""
    ttl = config.session_ttl_seconds
    return [
        exchange.exchange_id,
        "end",
        msgspec.json.encode(exchange),
        exchange.reply_text,
        exchange.status,
        exchange.finish_reason or "",
        msgspec.json.encode(exchange.error) if exchange.error else "",
        *usage_args(exchange.usage),
        *unwritten,
        completed_ms,
        ttl,
        min(config.replay_retention_seconds, ttl),
        completed_ms + ttl * 1000,
        exchange.first_token_ms or "",
    ]
