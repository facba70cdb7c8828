"""Agno's ids for Parley's: a dashed UUID names what its undashed 32-hex form names.

Agno clients make ids with ``str(uuid4())``; Parley's own are ``uuid4().hex``. Answers carry
Parley's form, and either form finds the same session or run.
"""

from __future__ import annotations

import re
import uuid

from server.surfaces.agno.errors import bad_request
from server.surfaces.agno.wire import SESSION_ID, SESSION_ID_RULE

_SESSION_ID = re.compile(SESSION_ID)


def _undashed(text: str) -> str | None:
    if len(text) != 36 or text.count("-") != 4:
        return None
    try:
        return uuid.UUID(text).hex
    except ValueError:
        return None


def session_id_of(text: str) -> str:
    return _undashed(text) or text


def run_ids_of(text: str) -> list[str]:
    """The exchange ids ``text`` may name, most likely first: a run id is whatever the
    exchange was given, which a native client may have sent dashed."""
    undashed = _undashed(text)
    return [undashed, text] if undashed else [text]


def new_session_id(text: str) -> str:
    """The id a session made under a caller's id gets: dashed UUIDs undashed. The service's
    own check lets a final line break through; this one does not."""
    if not _SESSION_ID.match(text):
        raise bad_request(f"session_id must be {SESSION_ID_RULE}, not {text[:70]!r}")
    return session_id_of(text)
