"""Conversion between Redis hash fields and domain types."""

from __future__ import annotations

from typing import Any

import msgspec

from streams.types import ErrorInfo, Exchange, Session, Usage

_params = msgspec.json.Decoder(dict[str, str])
_state = msgspec.json.Decoder(dict[str, Any])


def usage_from(record: dict[str, str]) -> Usage:
    """A hash's counters. ``cc5m`` is what ``cc`` leaves after ``cc1h``, so a hash stored
    before the cache-write split (no ``cc1h``) reads as all 5-minute writes."""
    return Usage(
        input_tokens=int(record.get("in", 0)),
        output_tokens=int(record.get("out", 0)),
        cache_read_input_tokens=int(record.get("cr", 0)),
        cache_creation_input_tokens=int(record.get("cc", 0)),
        cache_creation_1h_input_tokens=int(record.get("cc1h", 0)),
    ).totalled()


def usage_args(usage: Usage) -> list[int]:
    """The counters in the order the Lua scripts take them: in, out, cr, cc, cc5m, cc1h."""
    return [
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_input_tokens,
        usage.cache_creation_input_tokens,
        usage.cache_creation_5m_input_tokens,
        usage.cache_creation_1h_input_tokens,
    ]


def session_from(record: dict[str, str], *, running: bool) -> Session:
    return Session(
        session_id=record["cid"],
        agent_id=record["agent"],
        agent_version=int(record["version"]),
        title=record.get("title"),
        metadata=_params.decode(record.get("metadata", "{}")),
        refresh_interval_ms=int(record["interval"]),
        status="running" if running else "idle",
        exchange_count=int(record.get("count", 0)),
        answered_count=int(record.get("answered", 0)),
        usage=usage_from(record),
        created_ms=int(record["created"]),
        updated_ms=int(record["updated"]),
        expires_ms=int(record["expires"]),
        user_id=record.get("user"),
        state=_state.decode(record["state"]) if "state" in record else None,
        attributes=_state.decode(record["attrs"]) if "attrs" in record else None,
        commit_count=int(record.get("commits", 0)),
        last_commit_ms=int(record["lastcommit"]) if "lastcommit" in record else None,
        keep_recent_count=int(record.get("keep", 0)),
        archived_messages=int(record.get("cut", 0)),
    )


def exchange_from(sid: str, record: dict[str, str]) -> Exchange:
    completed = record.get("completed")
    first = record.get("first")
    error = record.get("error")
    return Exchange(
        exchange_id=record["xid"],
        session_id=sid,
        input_text=record.get("input", ""),
        reply_text=record.get("text", ""),
        status=record.get("status", "running"),  # type: ignore[arg-type]
        finish_reason=record.get("reason") or None,
        usage=usage_from(record),
        created_ms=int(record["created"]),
        completed_ms=int(completed) if completed else None,
        error=msgspec.json.decode(error, type=ErrorInfo) if error else None,
        parameters=_params.decode(record.get("params", "{}")),
        dropped=record.get("dropped") == "1",
        first_token_ms=int(first) if first else None,
        imported=record.get("imported") == "1",
    )


__all__ = ["exchange_from", "session_from", "usage_args", "usage_from"]
