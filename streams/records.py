"""Conversion between Redis hash fields and domain types."""

from __future__ import annotations

import msgspec

from streams.clock import iso
from streams.types import ErrorInfo, Exchange, Response, Session, Usage, UserInput


def usage_from(record: dict[str, str]) -> Usage:
    return Usage(
        input_tokens=int(record.get("in", 0)),
        output_tokens=int(record.get("out", 0)),
        cache_read_input_tokens=int(record.get("cr", 0)),
        cache_creation_input_tokens=int(record.get("cc", 0)),
    ).totalled()


def usage_args(usage: Usage) -> list[int]:
    """The four counters in the order the Lua scripts take them."""
    return [
        usage.input_tokens,
        usage.output_tokens,
        usage.cache_read_input_tokens,
        usage.cache_creation_input_tokens,
    ]


def session_from(record: dict[str, str], *, running: bool) -> Session:
    title = record.get("title")
    return Session(
        conversation_id=record["cid"],
        agent_id=record["agent"],
        agent_version=int(record["version"]),
        title=title,
        metadata=msgspec.json.decode(record.get("metadata", "{}"), type=dict[str, str]),
        refresh_interval_ms=int(record["interval"]),
        status="running" if running else "idle",
        message_count=int(record.get("count", 0)),
        usage=usage_from(record),
        created_at=iso(int(record["created"])),
        updated_at=iso(int(record["updated"])),
        expires_at=iso(int(record["expires"])),
        user_id=record.get("user"),
    )


def exchange_from(sid: str, record: dict[str, str]) -> Exchange:
    completed = record.get("completed")
    error = record.get("error")
    return Exchange(
        exchange_id=record["xid"],
        conversation_id=sid,
        user_input=UserInput(text=record.get("input", "")),
        response=Response(text=record.get("text", "")),
        status=record.get("status", "running"),  # type: ignore[arg-type]
        finish_reason=record.get("reason") or None,
        usage=usage_from(record),
        created_at=iso(int(record["created"])),
        completed_at=iso(int(completed)) if completed else None,
        error=msgspec.json.decode(error, type=ErrorInfo) if error else None,
    )


__all__ = ["exchange_from", "session_from", "usage_args", "usage_from"]
