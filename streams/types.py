"""Domain types shared by the engine and every API surface.

Field names are the engine's own and times are epoch milliseconds; each surface maps them
onto its API's shape (``server.surfaces.<name>.wire``).
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

import msgspec

T = TypeVar("T")
ExchangeStatus = Literal["running", "completed", "cancelled", "failed"]
SessionStatus = Literal["idle", "running"]
SessionSort = Literal["created", "updated"]
SearchSort = Literal["created", "updated", "title"]


class Usage(msgspec.Struct, kw_only=True):
    """Token counters. ``input_tokens`` excludes cached input, so the four parts add up.

    ``cache_creation_input_tokens`` counts every cache write; the 5-minute and 1-hour fields
    split it by time to live, as Anthropic reports it, and always add up to it exactly: the
    total stands, 1-hour writes count up to it and the rest are 5-minute writes (Anthropic's
    default TTL). So an upstream that reports only the total, and a record or payload stored
    before the split was kept, read as all 5-minute writes. Every construction and decode
    settles the split, so it is never double counted in ``total_tokens``.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_creation_5m_input_tokens: int = 0
    cache_creation_1h_input_tokens: int = 0
    total_tokens: int = 0

    def __post_init__(self) -> None:
        """Settle the split; decodes of payloads stored before it come through here too."""
        creation = self.cache_creation_input_tokens
        self.cache_creation_1h_input_tokens = min(self.cache_creation_1h_input_tokens, creation)
        self.cache_creation_5m_input_tokens = creation - self.cache_creation_1h_input_tokens

    def totalled(self) -> Usage:
        """Return a copy whose ``total_tokens`` is the sum of the four parts."""
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_input_tokens=self.cache_read_input_tokens,
            cache_creation_input_tokens=self.cache_creation_input_tokens,
            cache_creation_1h_input_tokens=self.cache_creation_1h_input_tokens,
            total_tokens=self.input_tokens
            + self.output_tokens
            + self.cache_read_input_tokens
            + self.cache_creation_input_tokens,
        )


class ErrorInfo(msgspec.Struct, kw_only=True):
    code: str
    message: str
    retryable: bool = False


class Exchange(msgspec.Struct, kw_only=True):
    """One user turn and the reply. ``dropped``: cancelled and left out of the history.

    ``imported``: a message a client added to the history without running the model (see
    :class:`ImportedMessage`); a user message has no reply, an assistant message no input.

    ``first_token_ms``: when the reply's first text arrived (None until it has, and for
    exchanges stored before it was recorded), so time to first token is a stored fact.
    """

    exchange_id: str
    session_id: str
    input_text: str
    reply_text: str
    status: ExchangeStatus
    finish_reason: str | None = None
    usage: Usage
    created_ms: int
    completed_ms: int | None = None
    error: ErrorInfo | None = None
    parameters: dict[str, str] = msgspec.field(default_factory=dict)
    dropped: bool = False
    first_token_ms: int | None = None
    imported: bool = False


class Session(msgspec.Struct, kw_only=True):
    """``exchange_count`` counts every exchange begun; ``answered_count`` those that got a
    reply: completed, or cancelled with a reply the client gave.

    Compaction (``ConversationService.commit``): ``commit_count`` archives were written, the
    first ``archived_messages`` history messages are archived (out of the model's context),
    and ``keep_recent_count`` is the keep window the last commit asked for.

    ``state`` is an opaque JSON object a client keeps with the session, for APIs that have
    one (a "session state"); the engine stores and returns it and never reads it.

    ``attributes`` is another opaque JSON object, for the surfaces themselves rather than
    their clients: each keeps the fields its API has and the engine lacks under its own
    name (``{"qoder": {...}}``). The engine stores and returns it and never reads it.
    """

    session_id: str
    agent_id: str
    agent_version: int
    title: str | None
    metadata: dict[str, str]
    refresh_interval_ms: int
    status: SessionStatus
    exchange_count: int
    answered_count: int
    usage: Usage
    created_ms: int
    updated_ms: int
    expires_ms: int
    user_id: str | None = None
    state: dict[str, Any] | None = None
    attributes: dict[str, Any] | None = None
    commit_count: int = 0
    last_commit_ms: int | None = None
    keep_recent_count: int = 0
    archived_messages: int = 0


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    next_cursor: str | None


class NewSession(msgspec.Struct, kw_only=True):
    agent_id: str
    agent_version: int | None = None
    title: str | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    refresh_interval_ms: int | None = None
    user_id: str | None = None
    state: dict[str, Any] | None = None
    attributes: dict[str, Any] | None = None


class SessionPatch(msgspec.Struct, kw_only=True):
    """Fields left UNSET stay as they are; ``title``, ``state`` or ``attributes`` None
    removes it. ``attributes`` is replaced whole: a surface reads, changes its own part and
    writes it back."""

    title: str | msgspec.UnsetType | None = msgspec.UNSET
    metadata: dict[str, str] | msgspec.UnsetType = msgspec.UNSET
    refresh_interval_ms: int | msgspec.UnsetType = msgspec.UNSET
    state: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET
    attributes: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET


class SessionQuery(msgspec.Struct, kw_only=True):
    agent_id: str | None = None
    status: SessionStatus | None = None
    title_contains: str | None = None
    user_id: str | None = None
    sort: SessionSort = "created"
    descending: bool = True
    limit: int = 20
    cursor: str | None = None


class SessionSearch(msgspec.Struct, kw_only=True):
    """A numbered page of a principal's sessions, for APIs that page by number and show an
    exact total. ``title`` sorts by title, case-insensitively, untitled first."""

    agent_id: str | None = None
    user_id: str | None = None
    title_contains: str | None = None
    sort: SearchSort = "created"
    descending: bool = True
    offset: int = 0
    limit: int = 20


class Counted(msgspec.Struct, Generic[T]):
    """One slice of a result and how many items the whole result holds."""

    items: list[T]
    total: int


class Turn(msgspec.Struct, kw_only=True):
    """A user turn as a surface hands it to the engine."""

    text: str
    exchange_id: str | None = None
    parameters: dict[str, str] = msgspec.field(default_factory=dict)


MessageRole = Literal["user", "assistant"]


class ImportedMessage(msgspec.Struct, kw_only=True):
    """A message a client adds to a session's history without running the model."""

    role: MessageRole
    text: str


class HistoryMessage(msgspec.Struct, kw_only=True):
    """One message of a session's history as the model sees it; ``exchange_id`` is the
    exchange it belongs to (an answered exchange holds two, an imported one one)."""

    exchange_id: str
    role: MessageRole
    text: str
    created_ms: int


class Archive(msgspec.Struct, kw_only=True):
    """A commit's archive: messages ``first`` (inclusive) to ``last`` (exclusive) of the
    session's history, replaced in the model's context by ``summary``, which the session's
    agent wrote using ``usage``."""

    number: int
    summary: str
    first: int
    last: int
    created_ms: int
    usage: Usage


class Transcript(msgspec.Struct, kw_only=True):
    """A session's whole history as messages, and its archives, oldest first."""

    session: Session
    messages: list[HistoryMessage]
    archives: list[Archive]

    @property
    def live(self) -> list[HistoryMessage]:
        """The messages no commit has archived yet."""
        return self.messages[self.session.archived_messages :]


class SessionContext(msgspec.Struct, kw_only=True):
    """What the next exchange would send besides the instructions and the new input:
    the archive summaries and live messages that fit the budget, and their tokens."""

    summaries: list[Archive]
    messages: list[HistoryMessage]
    tokens: int
    archives_total: int
