"""The small async interface every model backend implements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol

import msgspec

from streams.types import Usage

Provider = Literal["synthetic", "openai", "anthropic"]


class ModelSpec(msgspec.Struct, rename="camel", kw_only=True):
    provider: Provider = "synthetic"
    name: str = "synthetic-lorem"
    params: dict[str, Any] = msgspec.field(default_factory=dict)


class Message(msgspec.Struct, kw_only=True):
    role: Literal["user", "assistant"]
    text: str


class ModelRequest(msgspec.Struct, kw_only=True):
    """What a backend is asked: the system prompt, prior turns, then the new user turn last."""

    instructions: str
    messages: list[Message]
    model: ModelSpec


class Chunk(msgspec.Struct, kw_only=True):
    """One piece of a reply.

    ``usage``, when set, is the upstream's own cumulative report so far: it replaces any
    earlier report rather than adding to it. ``finish_reason`` is set on the last chunk.
    """

    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None


class BackendError(Exception):
    """A failure of the upstream model, safe to show to the user (no credentials)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after


class Backend(Protocol):
    def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        """Yield the reply as it is generated; raise :class:`BackendError` on failure."""
        ...
