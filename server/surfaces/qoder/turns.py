"""A session's engine steps (``streams.session_watch``) as this API's events, each turn in
the slots of :class:`~server.surfaces.qoder.ids.Slot`.

A turn shows ``user.message``, ``session.status_running``, ``span.model_request_start``,
then its text, then ``agent.message`` (when it said anything), ``user.interrupt`` (when
interrupted), ``span.model_request_end``, ``session.error`` (when it failed) and
``session.status_idle``. Its text shows in one of three dialects:

- ``whole``: not at all until ``agent.message``;
- ``qoder``: Qoder's ``agent.message_start``, ``agent.content_block_start``, one
  ``agent.content_block_delta`` per engine delta, ``agent.content_block_stop``,
  ``agent.message_delta`` and ``agent.message_stop``;
- ``previews``: the SDK's ``event_start`` then one ``event_delta`` per engine delta.

Incremental events begin with a turn's first delta: a turn replayed without its deltas (its
replay log expired) shows whole events only, and one that said nothing shows none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from server.surfaces.qoder.event_wire import (
    AgentMessage,
    AnyEvent,
    ContentBlockDelta,
    ContentBlockStart,
    ContentBlockStop,
    ContentDelta,
    ErrorObject,
    EventDelta,
    EventStart,
    MessageDelta,
    MessageDeltaBody,
    MessageStart,
    MessageStop,
    ModelRequestEnd,
    ModelRequestStart,
    Preview,
    Previewed,
    SessionError,
    StatusIdle,
    StatusRunning,
    StopReason,
    StreamMessage,
    TextBlock,
    TextDelta,
    UserInterrupt,
    UserMessage,
    model_usage,
    type_of,
)
from server.surfaces.qoder.ids import EventRef, Place, Slot, delta_event_id, event_id, turn_id
from streams.clock import iso
from streams.events import Item
from streams.session_watch import Step
from streams.types import Exchange, Usage

Dialect = Literal["whole", "qoder", "previews"]

# Why a turn stopped, as session.status_idle's stop_reason.type says it.
STOP_REASONS = {"completed": "end_turn", "cancelled": "interrupted", "failed": "retries_exhausted"}
_TRUNCATED = frozenset({"length", "max_tokens"})


@dataclass(frozen=True, slots=True)
class Placed:
    """An event, where it stands, and the SSE id it is sent under (a preview has no id of
    its own). ``item``: the engine delta it renders, whose frame cache it may use."""

    xid: str
    place: Place
    sse_id: str
    event: AnyEvent
    item: Item | None = None


class Turns:
    """Renders one reader's steps in order; it keeps whether the turn's text has begun.
    ``resume``: the event the reader resumes after, whose turn may have begun already."""

    def __init__(
        self, session_id: str, dialect: Dialect, model: str, resume: EventRef | None = None
    ) -> None:
        self.session_id = session_id
        self.dialect = dialect
        self.model = model
        self._resume = resume
        self._started = False

    def render(self, step: Step) -> list[Placed]:
        item = step.item
        if item.kind == "begin":
            return self._begin(item.exchange())
        if item.kind == "delta":
            return self._delta(step.xid, item)
        return self._end(item.exchange())

    # --- the three parts of a turn ---------------------------------------------------------

    def _begin(self, x: Exchange) -> list[Placed]:
        xid, at = x.exchange_id, iso(x.created_ms)
        ref = self._resume
        self._started = ref is not None and ref.xid == xid and ref.place.slot >= Slot.MESSAGE_START
        said = Placed(
            xid,
            Place(Slot.USER_MESSAGE),
            event_id(xid, Slot.USER_MESSAGE),
            user_message(self.session_id, x),
        )
        if x.imported:
            return [said] if x.input_text else []
        return [
            said,
            self._whole(xid, Slot.RUNNING, StatusRunning, at),
            self._whole(xid, Slot.REQUEST_START, ModelRequestStart, at, model=self.model),
        ]

    def _delta(self, xid: str, item: Item) -> list[Placed]:
        if self.dialect == "whole":
            return []
        text = item.delta().text
        at = iso(item.key[0])
        opening = [] if self._started else self._opening(xid, at)
        self._started = True
        place = Place(Slot.TEXT, item.key)
        sse_id = delta_event_id(xid, item.id)
        message_id = event_id(xid, Slot.AGENT_MESSAGE)
        if self.dialect == "previews":
            preview = EventDelta(event_id=message_id, delta=ContentDelta(content=_block(text)))
            return [*opening, Placed(xid, place, sse_id, preview, item)]
        delta = ContentBlockDelta(
            **self._head(sse_id, xid, at),
            message_id=message_id,
            index=0,
            delta=TextDelta(text=text),
        )
        return [*opening, Placed(xid, place, sse_id, delta, item)]

    def _end(self, x: Exchange) -> list[Placed]:
        xid = x.exchange_id
        at = iso(x.completed_ms or x.created_ms)
        out: list[Placed] = []
        if x.imported:
            if x.reply_text:
                out.append(
                    self._whole(
                        xid, Slot.AGENT_MESSAGE, AgentMessage, at, content=_text(x.reply_text)
                    )
                )
            return out
        if self._started and self.dialect == "qoder":
            out += self._closing(x, at)
        self._started = False
        if x.reply_text:
            out.append(
                self._whole(xid, Slot.AGENT_MESSAGE, AgentMessage, at, content=_text(x.reply_text))
            )
        if x.status == "cancelled":
            out.append(self._whole(xid, Slot.INTERRUPT, UserInterrupt, at))
        out.append(
            self._whole(
                xid,
                Slot.REQUEST_END,
                ModelRequestEnd,
                at,
                model_request_start_id=event_id(xid, Slot.REQUEST_START),
                is_error=x.status == "failed",
                model_usage=model_usage(x.usage),
            )
        )
        if x.status == "failed":
            out.append(self._whole(xid, Slot.ERROR, SessionError, at, error=_error(x)))
        reason = StopReason(STOP_REASONS.get(x.status, "end_turn"))
        out.append(self._whole(xid, Slot.IDLE, StatusIdle, at, stop_reason=reason))
        return out

    # --- incremental events around the text ------------------------------------------------

    def _opening(self, xid: str, at: str) -> list[Placed]:
        message_id = event_id(xid, Slot.AGENT_MESSAGE)
        if self.dialect == "previews":
            start = EventStart(event=Previewed(id=message_id))
            return [
                Placed(xid, Place(Slot.MESSAGE_START), event_id(xid, Slot.MESSAGE_START), start)
            ]
        message = StreamMessage(id=message_id, model=self.model, usage=model_usage(Usage()))
        return [
            self._whole(
                xid, Slot.MESSAGE_START, MessageStart, at, message_id=message_id, message=message
            ),
            self._whole(
                xid,
                Slot.BLOCK_START,
                ContentBlockStart,
                at,
                message_id=message_id,
                index=0,
                content_block=_block(""),
            ),
        ]

    def _closing(self, x: Exchange, at: str) -> list[Placed]:
        xid = x.exchange_id
        message_id = event_id(xid, Slot.AGENT_MESSAGE)
        body = MessageDeltaBody(stop_reason=_message_stop_reason(x))
        return [
            self._whole(xid, Slot.BLOCK_STOP, ContentBlockStop, at, message_id=message_id, index=0),
            self._whole(
                xid,
                Slot.MESSAGE_DELTA,
                MessageDelta,
                at,
                message_id=message_id,
                delta=body,
                usage=model_usage(x.usage),
            ),
            self._whole(xid, Slot.MESSAGE_STOP, MessageStop, at, message_id=message_id),
        ]

    # --- helpers ---------------------------------------------------------------------------

    def _head(self, eid: str, xid: str, at: str) -> dict[str, str]:
        return {
            "id": eid,
            "session_id": self.session_id,
            "turn_id": turn_id(xid),
            "processed_at": at,
        }

    def _whole(self, xid: str, slot: Slot, kind: type, at: str, **fields: object) -> Placed:
        eid = event_id(xid, slot)
        return Placed(xid, Place(slot), eid, kind(**self._head(eid, xid, at), **fields))


def user_message(session_id: str, x: Exchange) -> UserMessage:
    """The ``user.message`` that began turn ``x``, as history, streams and the echo of a
    sent event all show it."""
    xid = x.exchange_id
    return UserMessage(
        id=event_id(xid, Slot.USER_MESSAGE),
        session_id=session_id,
        turn_id=turn_id(xid),
        processed_at=iso(x.created_ms),
        content=_text(x.input_text),
    )


def _block(text: str) -> TextBlock:
    return TextBlock(text=text)


def _text(text: str) -> list[TextBlock]:
    return [_block(text)]


def _message_stop_reason(x: Exchange) -> str:
    """Anthropic's message stop reasons for a completed turn; this API's idle reasons else."""
    if x.status != "completed":
        return STOP_REASONS[x.status]
    return "max_tokens" if x.finish_reason in _TRUNCATED else "end_turn"


def _error(x: Exchange) -> ErrorObject:
    code = x.error.code if x.error else "internal_error"
    message = x.error.message if x.error else "the turn failed"
    if code == "upstream_rate_limited":
        kind = "model_rate_limited_error"
    elif code.startswith(("upstream_", "provider_")):
        kind = "model_request_failed_error"
    else:
        kind = "unknown_error"
    return ErrorObject(type=kind, message=message)


class After:
    """Keeps what a reader does not have yet: events of the turn it resumes in that stand
    after ``ref``, and every event of the turns that follow."""

    def __init__(self, ref: EventRef | None) -> None:
        self._ref = ref

    def keeps(self, placed: Placed) -> bool:
        ref = self._ref
        if ref is None:
            return True
        if placed.xid == ref.xid:
            return placed.place > ref.place
        self._ref = None
        return True


class Wanted:
    """A ``types[]`` filter (None: every type); previews go with ``agent.message``."""

    def __init__(self, types: frozenset[str] | None) -> None:
        self._types = types

    def keeps(self, placed: Placed) -> bool:
        if self._types is None:
            return True
        event = placed.event
        kind = "agent.message" if isinstance(event, Preview) else type_of(event)
        return kind in self._types


def wanted_types(types: list[str] | None, comma_separated: str | None) -> frozenset[str] | None:
    """Qoder's ``type=a,b`` and ``types[]=a&types[]=b`` together; None when neither."""
    named = [*(types or []), *(comma_separated.split(",") if comma_separated else [])]
    found = frozenset(name.strip() for name in named if name.strip())
    return found or None
