"""Request bodies of the native ``/v1`` surface. Responses reuse the engine's Structs."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

MIN_INTERVAL_MS = 50
MAX_INTERVAL_MS = 5000
MAX_METADATA = 16

Interval = Annotated[int, msgspec.Meta(description="Refresh interval in ms, 50-5000.")]
Metadata = Annotated[
    dict[str, str],
    msgspec.Meta(description="Up to 16 string pairs; keys up to 64, values up to 512 chars."),
]
Title = Annotated[str, msgspec.Meta(max_length=200)]


def check_interval(value: int | msgspec.UnsetType | None) -> None:
    if isinstance(value, int) and not MIN_INTERVAL_MS <= value <= MAX_INTERVAL_MS:
        raise ValueError(
            f"refreshIntervalMs must be between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS}, "
            f"got {value}"
        )


def check_metadata(value: dict[str, str] | msgspec.UnsetType) -> None:
    if isinstance(value, msgspec.UnsetType):
        return
    if len(value) > MAX_METADATA:
        raise ValueError(f"metadata holds at most {MAX_METADATA} pairs, got {len(value)}")
    for key, item in value.items():
        if not 1 <= len(key) <= 64:
            raise ValueError(f"metadata key {key[:70]!r} must be 1-64 characters")
        if len(item) > 512:
            raise ValueError(f"metadata value of {key!r} is longer than 512 characters")


class CreateSession(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    agent_id: str = "default"
    agent_version: int | None = None
    title: Title | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)
    refresh_interval_ms: Interval | None = None
    user_id: str | None = None

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
    text: str


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
