"""The native ``/v1`` wire: camelCase request bodies and responses, and their mapping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Generic, Literal, TypeVar

import msgspec

from streams import types as domain
from streams.clock import iso
from streams.limits import (
    MAX_INTERVAL_MS,
    MIN_INTERVAL_MS,
    InputText,
    Interval,
    Metadata,
    Title,
    UserId,
    check_metadata,
)
from streams.types import ExchangeStatus, SessionStatus

T = TypeVar("T")
D = TypeVar("D")


def check_interval(value: int | msgspec.UnsetType | None) -> None:
    if isinstance(value, int) and not MIN_INTERVAL_MS <= value <= MAX_INTERVAL_MS:
        raise ValueError(
            f"refreshIntervalMs must be between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS}, "
            f"got {value}"
        )


class CreateSession(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    agent_id: str = "default"
    agent_version: int | None = None
    title: Title | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)
    refresh_interval_ms: Interval | None = None
    user_id: UserId | None = None

    def __post_init__(self) -> None:
        check_interval(self.refresh_interval_ms)
        check_metadata(self.metadata)


class PatchSession(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    title: Title | msgspec.UnsetType | None = msgspec.UNSET
    metadata: Metadata | msgspec.UnsetType = msgspec.UNSET
    refresh_interval_ms: Interval | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        check_interval(self.refresh_interval_ms)
        check_metadata(self.metadata)


class UserInputBody(msgspec.Struct, forbid_unknown_fields=True):
    text: InputText


class ContinueBody(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    user_input: UserInputBody
    message_id: str | None = None
    on_disconnect: Literal["continue", "cancel"] = "continue"


class CancelBody(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    message_id: str | None = None


class BatchDelete(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    conversation_ids: Annotated[list[str], msgspec.Meta(min_length=1, max_length=100)]


class BatchDeleteResult(msgspec.Struct, rename="camel"):
    deleted: list[str]
    not_found: list[str]


class Started(msgspec.Struct, rename="camel"):
    exchange_id: str
    conversation_id: str


# --- responses: the engine's domain types in the native shape ------------------------------


class Usage(msgspec.Struct, rename="camel", kw_only=True):
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    total_tokens: int


class Text(msgspec.Struct):
    text: str


class ErrorInfo(msgspec.Struct, kw_only=True):
    code: str
    message: str
    retryable: bool = False


class Exchange(msgspec.Struct, rename="camel", kw_only=True):
    exchange_id: str
    conversation_id: str
    user_input: Text
    response: Text
    status: ExchangeStatus
    finish_reason: str | None = None
    usage: Usage
    created_at: str
    completed_at: str | None = None
    error: ErrorInfo | None = None


class Session(msgspec.Struct, rename="camel", kw_only=True):
    conversation_id: str
    agent_id: str
    agent_version: int
    title: str | None
    metadata: dict[str, str]
    refresh_interval_ms: int
    status: SessionStatus
    message_count: int
    usage: Usage
    created_at: str
    updated_at: str
    expires_at: str
    user_id: str | None = None


class Page(msgspec.Struct, Generic[T], rename="camel"):
    data: list[T]
    next_cursor: str | None


class Delta(msgspec.Struct):
    seq: int
    text: str
    usage: Usage


class ErrorData(msgspec.Struct, kw_only=True):
    """The ``error`` event: what failed, and the exchange as stored."""

    code: str
    message: str
    retryable: bool = False
    exchange: Exchange | None = None


def usage_out(usage: domain.Usage) -> Usage:
    return msgspec.convert(usage, Usage, from_attributes=True)


def exchange_out(x: domain.Exchange) -> Exchange:
    error = x.error
    return Exchange(
        exchange_id=x.exchange_id,
        conversation_id=x.session_id,
        user_input=Text(x.input_text),
        response=Text(x.reply_text),
        status=x.status,
        finish_reason=x.finish_reason,
        usage=usage_out(x.usage),
        created_at=iso(x.created_ms),
        completed_at=iso(x.completed_ms) if x.completed_ms is not None else None,
        error=ErrorInfo(code=error.code, message=error.message, retryable=error.retryable)
        if error
        else None,
    )


def session_out(s: domain.Session) -> Session:
    return Session(
        conversation_id=s.session_id,
        agent_id=s.agent_id,
        agent_version=s.agent_version,
        title=s.title,
        metadata=s.metadata,
        refresh_interval_ms=s.refresh_interval_ms,
        status=s.status,
        message_count=s.exchange_count,
        usage=usage_out(s.usage),
        created_at=iso(s.created_ms),
        updated_at=iso(s.updated_ms),
        expires_at=iso(s.expires_ms),
        user_id=s.user_id,
    )


def page_out(page: domain.Page[D], convert: Callable[[D], T]) -> Page[T]:
    return Page([convert(item) for item in page.items], page.next_cursor)
