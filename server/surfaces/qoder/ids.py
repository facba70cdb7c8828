"""Session and event ids, derived from the engine's records so they never need storing.

A session is ``sess_`` + the engine's session id: the conversation the native API serves at
``/v1/sessions/{id}``. An event is ``evt_<exchange id>_<where>``: a turn's events stand in a
fixed order of slots, and each delta between the slots before and after the text, at the
replay-log id it was stored under (``evt_<xid>_1700000000000-0``). So history, live streams
and resumes give one event one id, and an id orders events: exchange, slot, log id.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from enum import IntEnum

from streams.errors import NotFound
from streams.events import stream_key
from streams.limits import END, ID

SESSION_PREFIX = "sess_"
EVENT_PREFIX = "evt_"
_ENGINE_ID = re.compile(ID)
_SLOT = re.compile(r"[0-9]{2}")
_LOG_ID = re.compile(r"[0-9]{1,19}-[0-9]{1,19}")
# Exactly what parse_event_id reads as an event (or nothing: an empty query value is none),
# for the OpenAPI document.
EVENT_ID_PATTERN = rf"^(?:evt_{ID}_(?:0[0-46-9]|1[0-3]|[0-9]{{1,19}}-[0-9]{{1,19}}))?{END}"
EVENT_ID_SHAPE = "an event id this API gave, like evt_<turn>_09 or evt_<turn>_1700000000000-0"


class Slot(IntEnum):
    """A turn's events, in order; optional ones (Qoder's incremental events, the SDK's
    previews, interrupt, error) keep their slot whether or not a turn has them."""

    USER_MESSAGE = 0
    RUNNING = 1
    REQUEST_START = 2
    MESSAGE_START = 3  # Qoder's agent.message_start, or the SDK's event_start
    BLOCK_START = 4
    TEXT = 5  # each delta, at its log id
    BLOCK_STOP = 6
    MESSAGE_DELTA = 7
    MESSAGE_STOP = 8
    AGENT_MESSAGE = 9
    INTERRUPT = 10
    REQUEST_END = 11
    ERROR = 12
    IDLE = 13


@dataclass(frozen=True, order=True)
class Place:
    """Where an event stands in its turn: its slot, and a delta's log id as a sort key."""

    slot: int
    key: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class EventRef:
    """A parsed event id: its exchange, place and (a delta's) log id."""

    xid: str
    place: Place
    log_id: str | None = None


def session_id(sid: str) -> str:
    return SESSION_PREFIX + sid


def engine_session_id(public: str) -> str:
    """The engine's id of session ``public``; an id this API never gave is not found."""
    sid = public.removeprefix(SESSION_PREFIX)
    if not public.startswith(SESSION_PREFIX) or not _ENGINE_ID.fullmatch(sid):
        raise NotFound(
            f"session {public} not found", resource="session", details={"session_id": public}
        )
    return sid


def event_id(xid: str, slot: Slot) -> str:
    return f"{EVENT_PREFIX}{xid}_{slot:02d}"


def delta_event_id(xid: str, log_id: str) -> str:
    return f"{EVENT_PREFIX}{xid}_{log_id}"


def loose_event_id() -> str:
    """An id for an event no turn holds (an interrupt with nothing running)."""
    return EVENT_PREFIX + uuid.uuid4().hex


def turn_id(xid: str) -> str:
    return "turn_" + xid


def parse_event_id(value: str) -> EventRef | None:
    """The event ``value`` names, or None when it is no event id of a turn."""
    xid, _, where = value.removeprefix(EVENT_PREFIX).rpartition("_")
    if not value.startswith(EVENT_PREFIX) or not _ENGINE_ID.fullmatch(xid):
        return None
    if _LOG_ID.fullmatch(where):
        return EventRef(xid, Place(Slot.TEXT, stream_key(where)), where)
    if _SLOT.fullmatch(where) and int(where) <= Slot.IDLE and int(where) != Slot.TEXT:
        return EventRef(xid, Place(int(where)))
    return None
