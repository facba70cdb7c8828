"""Domain types shared by the engine and every API surface.

They serialise as camelCase, which is the native ``/v1`` wire format; other surfaces map
them onto their own shapes.
"""

from __future__ import annotations

from typing import Literal

import msgspec

ExchangeStatus = Literal["running", "completed", "cancelled", "failed"]
SessionStatus = Literal["idle", "running"]


class Usage(msgspec.Struct, rename="camel", kw_only=True):
    """Token counters. ``inputTokens`` excludes cached input, so the four parts add up."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    total_tokens: int = 0

    def totalled(self) -> Usage:
        """Return a copy whose ``totalTokens`` is the sum of the four parts."""
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens,
            total_tokens=self.input_tokens
            + self.output_tokens
            + self.cache_read_input_tokens
            + self.cache_creation_input_tokens,
        )


USAGE_FIELDS: tuple[str, ...] = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
)


class UserInput(msgspec.Struct, rename="camel"):
    text: str


class Response(msgspec.Struct, rename="camel"):
    text: str


class ErrorInfo(msgspec.Struct, rename="camel", kw_only=True):
    code: str
    message: str
    retryable: bool = False


class Exchange(msgspec.Struct, rename="camel", kw_only=True):
    exchange_id: str
    conversation_id: str
    user_input: UserInput
    response: Response
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
