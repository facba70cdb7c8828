"""Palantir's names for Parley's things: RIDs, version strings and trace UUIDs."""

from __future__ import annotations

import re
import uuid

from streams.limits import ID

SESSION_RID = "ri.aip-agents..session."
AGENT_RID = "ri.aip-agents..agent."
ID_PATTERN = ID
_ID = re.compile(ID_PATTERN)
# An agent version as Palantir writes it ("3.0"), or its major number alone ("3").
VERSION_PATTERN = r"^([1-9][0-9]{0,8})(?:\.0)?$"
_VERSION = re.compile(VERSION_PATTERN)
_TRACE_NAMESPACE = uuid.UUID("8f2d6a4e-6d0c-4b39-9d0e-3b1f3f1c2a10")


def session_rid(sid: str) -> str:
    return SESSION_RID + sid


def agent_rid(agent_id: str) -> str:
    return AGENT_RID + agent_id


def rid_pattern(prefix: str) -> str:
    """The RIDs of this kind that can name a Parley id, as a schema's pattern."""
    escaped = prefix.replace(".", r"\.")  # a prefix is letters, '-' and '.'
    return f"^{escaped}{ID_PATTERN}$"


def parse_rid(rid: str, prefix: str) -> str | None:
    """The Parley id inside a RID of this kind, or None when it cannot name one."""
    if not rid.startswith(prefix):
        return None
    inner = rid[len(prefix) :]
    return inner if _ID.fullmatch(inner) else None


def version_string(version: int) -> str:
    return f"{version}.0"


def parse_version(text: str) -> int | None:
    """``"N.0"`` or ``"N"``; Parley versions have no minor part. ``fullmatch``: a ``$`` in
    Python's ``match`` would let a trailing newline through, which the schema's pattern does
    not."""
    match = _VERSION.fullmatch(text)
    return int(match[1]) if match else None


def trace_id(exchange_id: str) -> str:
    """An exchange's UUID: its own id when it is one, else a stable UUID derived from it."""
    try:
        return str(uuid.UUID(exchange_id))
    except ValueError:
        return str(uuid.uuid5(_TRACE_NAMESPACE, exchange_id))
