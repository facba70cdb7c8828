"""Session events on the wire: what a client sends (``user.message``, ``user.interrupt``)
and every event a turn shows, as Structs tagged by ``type``.

Whole events carry ``id``, ``session_id``, ``turn_id`` and ``processed_at`` (RFC 3339).
Qoder's incremental events (``agent.message_start`` ... ``agent.message_stop``) are
Anthropic's raw stream events with the ``agent.`` prefix and the same fields, plus
``message_id``: the id of the ``agent.message`` they build. The SDK's previews
(``event_start``, ``event_delta``) carry only what the SDK types give them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec

from server.surfaces.qoder.errors import api_error
from streams.config import EngineConfig
from streams.limits import InputText
from streams.types import Usage

# Event types the SDK can send that Parley has nothing to act on: there are no tools to
# confirm or return results for, no outcomes and no system turns.
UNSUPPORTED = frozenset(
    {
        "user.tool_confirmation",
        "user.custom_tool_result",
        "user.tool_result",
        "user.define_outcome",
        "system.message",
    }
)


# --- what clients send ----------------------------------------------------------------------


class SendEvents(msgspec.Struct, forbid_unknown_fields=True):
    events: list[dict[str, Any]]


# The shapes :func:`incoming` takes, for the OpenAPI document: the body is read as plain
# objects above, so that a refusal names the event and says why in this API's words.
_MAX_TEXT = EngineConfig().max_input_chars  # the engine's default limit on a turn's text
_NOT_BLANK = {"properties": {"text": {"pattern": r"\S"}}}


class TextIn(msgspec.Struct):
    type: Literal["text"]
    text: Annotated[str, msgspec.Meta(max_length=_MAX_TEXT)]


TextBlocks = Annotated[
    list[TextIn],
    msgspec.Meta(
        min_length=1,
        description="Text blocks, joined by blank lines into the turn's text: not all blank, "
        f"up to {_MAX_TEXT} characters in all.",
        extra_json_schema={"contains": _NOT_BLANK},
    ),
]
SaidText = Annotated[InputText, msgspec.Meta(max_length=_MAX_TEXT)]


class UserMessageIn(msgspec.Struct, tag_field="type", tag="user.message"):
    content: SaidText | TextBlocks


class UserInterruptIn(msgspec.Struct, tag_field="type", tag="user.interrupt"):
    pass


# UserMessageIn's schema whole, for a field read as a plain object (initial_events).
USER_MESSAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "type": {"const": "user.message"},
        "content": {
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": _MAX_TEXT, "pattern": r"\S"},
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {
                            "type": {"const": "text"},
                            "text": {"type": "string", "maxLength": _MAX_TEXT},
                        },
                        "required": ["type", "text"],
                    },
                    "contains": _NOT_BLANK,
                },
            ]
        },
    },
    "required": ["type", "content"],
}
_ONE_MESSAGE = {
    "contains": {"properties": {"type": {"const": "user.message"}}},
    "minContains": 0,
    "maxContains": 1,
}


class SendEventsShape(msgspec.Struct, forbid_unknown_fields=True):
    """Events to act on in order: at most one ``user.message`` (a turn), and interrupts.
    Parley runs no tools, outcomes or system turns: other types are 501."""

    events: Annotated[
        list[UserMessageIn | UserInterruptIn],
        msgspec.Meta(min_length=1, extra_json_schema=_ONE_MESSAGE),
    ]


@dataclass(frozen=True)
class Said:
    """A ``user.message``: its text blocks joined by blank lines, as the engine takes it."""

    text: str


@dataclass(frozen=True)
class Interrupt:
    """A ``user.interrupt``."""


Incoming = Said | Interrupt


def incoming(events: list[dict[str, Any]]) -> list[Incoming]:
    """The events of one request, all checked before any is acted on."""
    if not events:
        raise api_error(
            "invalid_request_error", "events must hold at least one event", param="events"
        )
    found = [_incoming(i, event) for i, event in enumerate(events)]
    if sum(isinstance(e, Said) for e in found) > 1:
        raise api_error(
            "invalid_request_error",
            "send one user.message at a time: the next waits for this turn to end",
            param="events",
        )
    return found


def _incoming(i: int, event: dict[str, Any]) -> Incoming:
    kind = event.get("type")
    if kind == "user.message":
        return Said(_text(i, event.get("content")))
    if kind == "user.interrupt":
        return Interrupt()
    if isinstance(kind, str) and kind in UNSUPPORTED:
        raise api_error(
            "feature_not_available",
            f"{kind} is not supported: Parley runs no tools, outcomes or system turns",
            param=f"events[{i}].type",
        )
    raise api_error(
        "invalid_request_error",
        f"events[{i}].type must be user.message or user.interrupt, not {kind!r}",
        param=f"events[{i}].type",
    )


def _text(i: int, content: Any) -> str:
    """Text blocks only (a bare string reads as one); other blocks are refused."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list) or not content:
        raise api_error(
            "invalid_request_error",
            f"events[{i}].content must be a non-empty list of text blocks",
            param=f"events[{i}].content",
        )
    texts: list[str] = []
    for j, block in enumerate(content):
        where = f"events[{i}].content[{j}]"
        if not isinstance(block, dict) or block.get("type") != "text":
            kind = block.get("type") if isinstance(block, dict) else None
            raise api_error(
                "invalid_request_error",
                f"{where}.type must be text, not {kind!r}: Parley takes text only",
                param=f"{where}.type",
            )
        if not isinstance(block.get("text"), str):
            message = f"{where}.text must be a string"
            raise api_error("invalid_request_error", message, param=f"{where}.text")
        texts.append(block["text"])
    return "\n\n".join(texts)


# --- what a turn shows -----------------------------------------------------------------------


class TextBlock(msgspec.Struct, kw_only=True):
    type: Literal["text"] = "text"
    text: str


class CacheCreation(msgspec.Struct, kw_only=True):
    ephemeral_5m_input_tokens: int
    ephemeral_1h_input_tokens: int


class ModelUsage(msgspec.Struct, kw_only=True):
    """The SDK's four counters, and the cache writes split by time to live."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    cache_creation: CacheCreation


def cache_creation(usage: Usage) -> CacheCreation:
    return CacheCreation(
        ephemeral_5m_input_tokens=usage.cache_creation_5m_input_tokens,
        ephemeral_1h_input_tokens=usage.cache_creation_1h_input_tokens,
    )


def model_usage(usage: Usage) -> ModelUsage:
    return ModelUsage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cache_creation_input_tokens=usage.cache_creation_input_tokens,
        cache_read_input_tokens=usage.cache_read_input_tokens,
        cache_creation=cache_creation(usage),
    )


class Event(msgspec.Struct, kw_only=True, tag_field="type", omit_defaults=True):
    """``turn_id`` is left out of events that belong to no turn."""

    id: str
    session_id: str
    turn_id: str | None = None
    processed_at: str


class UserMessage(Event, tag="user.message", kw_only=True):
    content: list[TextBlock]


class UserInterrupt(Event, tag="user.interrupt", kw_only=True):
    pass


class StatusRunning(Event, tag="session.status_running", kw_only=True):
    pass


class ModelRequestStart(Event, tag="span.model_request_start", kw_only=True):
    model: str


class AgentMessage(Event, tag="agent.message", kw_only=True):
    content: list[TextBlock]


class ModelRequestEnd(Event, tag="span.model_request_end", kw_only=True):
    model_request_start_id: str
    is_error: bool
    model_usage: ModelUsage


class RetryStatus(msgspec.Struct):
    type: Literal["terminal"] = "terminal"


class ErrorObject(msgspec.Struct, kw_only=True):
    type: str
    message: str
    retry_status: RetryStatus = msgspec.field(default_factory=RetryStatus)


class SessionError(Event, tag="session.error", kw_only=True):
    error: ErrorObject


class StopReason(msgspec.Struct):
    type: str


class StatusIdle(Event, tag="session.status_idle", kw_only=True):
    stop_reason: StopReason


class SessionDeleted(Event, tag="session.deleted", kw_only=True):
    pass


# Qoder's incremental events.


class StreamMessage(msgspec.Struct, kw_only=True):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[TextBlock] = msgspec.field(default_factory=list)
    stop_reason: None = None
    usage: ModelUsage


class MessageStart(Event, tag="agent.message_start", kw_only=True):
    message_id: str
    message: StreamMessage


class ContentBlockStart(Event, tag="agent.content_block_start", kw_only=True):
    message_id: str
    index: int
    content_block: TextBlock


class TextDelta(msgspec.Struct, kw_only=True):
    type: Literal["text_delta"] = "text_delta"
    text: str


class ContentBlockDelta(Event, tag="agent.content_block_delta", kw_only=True):
    message_id: str
    index: int
    delta: TextDelta


class ContentBlockStop(Event, tag="agent.content_block_stop", kw_only=True):
    message_id: str
    index: int


class MessageDeltaBody(msgspec.Struct, kw_only=True):
    stop_reason: str
    stop_sequence: None = None


class MessageDelta(Event, tag="agent.message_delta", kw_only=True):
    message_id: str
    delta: MessageDeltaBody
    usage: ModelUsage


class MessageStop(Event, tag="agent.message_stop", kw_only=True):
    message_id: str


# The SDK's previews of an agent.message.


class Preview(msgspec.Struct, kw_only=True, tag_field="type"):
    pass


class Previewed(msgspec.Struct, kw_only=True):
    type: Literal["agent.message"] = "agent.message"
    id: str


class EventStart(Preview, tag="event_start", kw_only=True):
    event: Previewed


class ContentDelta(msgspec.Struct, kw_only=True):
    type: Literal["content_delta"] = "content_delta"
    index: int = 0
    content: TextBlock


class EventDelta(Preview, tag="event_delta", kw_only=True):
    event_id: str
    delta: ContentDelta


AnyEvent = Event | Preview
# Every event a list shows, whole or incremental, and those a send echoes.
ListedEvent = (
    UserMessage
    | UserInterrupt
    | StatusRunning
    | ModelRequestStart
    | AgentMessage
    | ModelRequestEnd
    | SessionError
    | StatusIdle
    | MessageStart
    | ContentBlockStart
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
)
SentEvent = UserMessage | UserInterrupt


def type_of(event: AnyEvent) -> str:
    tag = type(event).__struct_config__.tag
    assert isinstance(tag, str)
    return tag
