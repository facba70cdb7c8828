"""OpenViking's request and response bodies (v0.3.24), and the converters from the engine's
types. Times are ISO 8601 UTC with milliseconds and ``Z``, as its ``format_iso8601`` writes."""

from __future__ import annotations

from typing import Annotated, Any, Generic, Literal, TypeVar

import msgspec

from server.surfaces.openviking.errors import ErrorInfo
from server.surfaces.openviking.tokens import estimate_tokens
from streams.clock import iso
from streams.limits import END, ID, ID_RULE, NOT_BLANK
from streams.tokens import count_tokens
from streams.types import Archive, HistoryMessage, SessionContext, Transcript, Usage

T = TypeVar("T")
MAX_BATCH = 100
# Parley's session ids (``check_id``).
SESSION_ID = f"^{ID}{END}"
SESSION_ID_RULE = ID_RULE


class Envelope(msgspec.Struct, Generic[T]):
    """Every answer but commit's: nulls included."""

    status: str
    result: T | None
    error: ErrorInfo | None = None
    telemetry: None = None
    profile: None = None


def ok(result: T) -> Envelope[T]:
    return Envelope(status="ok", result=result)


class User(msgspec.Struct):
    account_id: str
    user_id: str
    agent_id: str


# --- requests ------------------------------------------------------------------------------


# The rules below a handler checks itself, with a message that names the value, are only
# described here (``extra_json_schema``); msgspec enforces the others while decoding.
SessionId = Annotated[
    str,
    msgspec.Meta(
        description=f"{SESSION_ID_RULE}.",
        extra_json_schema={"minLength": 1, "maxLength": 64, "pattern": SESSION_ID},
    ),
]


class CreateSessionRequest(msgspec.Struct):
    session_id: SessionId | None = None
    telemetry: Any = None


class Part(msgspec.Struct):
    """Only text parts are taken; context and tool parts are refused (not modelled)."""

    type: Annotated[str, msgspec.Meta(extra_json_schema={"enum": ["text"]})]
    text: str | None = None


class AddMessageRequest(msgspec.Struct):
    role: Literal["user", "assistant"]
    content: str | None = None
    parts: list[Part] | None = None
    role_id: str | None = None
    created_at: str | None = None
    telemetry: Any = None


# What makes a message: ``parts`` (which win) with some text in them, or else ``content``
# with some text. The service refuses a blank message; a longer one than its
# ``max_input_chars`` too, which is configuration, not schema.
_HAS_TEXT = {"type": "string", "pattern": NOT_BLANK}
_SOME_TEXT = {
    "anyOf": [
        {
            "required": ["parts"],
            "properties": {
                "parts": {
                    "type": "array",
                    "contains": {"required": ["text"], "properties": {"text": _HAS_TEXT}},
                }
            },
        },
        {
            "required": ["content"],
            "properties": {"content": _HAS_TEXT, "parts": {"type": "null"}},
        },
    ]
}
Message = Annotated[
    AddMessageRequest,
    msgspec.Meta(
        description="Either 'content' or 'parts' must be provided, and hold some text.",
        extra_json_schema=_SOME_TEXT,
    ),
]


class BatchMessagesRequest(msgspec.Struct):
    # An empty batch is refused by the service, in its words ("must hold 1 to 100").
    messages: Annotated[
        list[Message], msgspec.Meta(max_length=MAX_BATCH, extra_json_schema={"minItems": 1})
    ]
    telemetry: Any = None


class CommitRequest(msgspec.Struct):
    keep_recent_count: Annotated[int, msgspec.Meta(ge=0, le=10_000)] = 0
    telemetry: Any = None


# --- results -------------------------------------------------------------------------------


class Created(msgspec.Struct):
    session_id: str
    user: User


class Listed(msgspec.Struct):
    session_id: str
    uri: str
    is_dir: bool = True


class Deleted(msgspec.Struct):
    session_id: str


class Added(msgspec.Struct):
    session_id: str
    message_count: int


class AddedBatch(msgspec.Struct):
    session_id: str
    message_count: int
    added: int


class Memories(msgspec.Struct):
    """Memory extraction is not built: every count stays 0."""

    profile: int = 0
    preferences: int = 0
    entities: int = 0
    events: int = 0
    cases: int = 0
    patterns: int = 0
    tools: int = 0
    skills: int = 0
    total: int = 0


class TokenUsage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cached_tokens: int
    reasoning_tokens: int = 0


class EmbeddingUsage(msgspec.Struct):
    total_tokens: int = 0


class SessionDetail(msgspec.Struct):
    session_id: str
    created_at: str
    updated_at: str
    created_by_user_id: str
    participant_user_ids: list[str]
    participant_agent_ids: list[str]
    message_count: int
    commit_count: int
    memories_extracted: Memories
    last_commit_at: str
    llm_token_usage: TokenUsage
    embedding_token_usage: EmbeddingUsage
    pending_tokens: int
    keep_recent_count: int
    total_message_count: int
    user: User


class Committed(msgspec.Struct, omit_defaults=True):
    """Commit's result; with its envelope, written without null keys (``exclude_none``)."""

    session_id: str
    status: str
    archived: bool
    task_id: str | None = None
    archive_uri: str | None = None
    reason: str | None = None


class CommitEnvelope(msgspec.Struct):
    result: Committed
    status: str = "ok"


class TextPart(msgspec.Struct):
    text: str
    type: str = "text"


class MessageOut(msgspec.Struct):
    id: str
    role: str
    parts: list[TextPart]
    created_at: str
    role_id: str | None = None


class ArchiveAbstract(msgspec.Struct):
    archive_id: str
    abstract: str
    tokens: int


class ContextStats(msgspec.Struct, rename="camel"):
    total_archives: int
    included_archives: int
    dropped_archives: int
    failed_archives: int
    active_tokens: int
    archive_tokens: int


class SessionContextOut(msgspec.Struct):
    latest_archive_overview: str
    pre_archive_abstracts: list[ArchiveAbstract]
    messages: list[MessageOut]
    estimatedTokens: int
    stats: ContextStats


class ArchiveOut(msgspec.Struct):
    archive_id: str
    abstract: str
    overview: str
    messages: list[MessageOut]


# --- converters ----------------------------------------------------------------------------


def archive_id(number: int) -> str:
    return f"archive_{number:03d}"


def archive_uri(sid: str, number: int) -> str:
    return f"viking://session/{sid}/history/{archive_id(number)}"


def token_usage(usage: Usage) -> TokenUsage:
    """Parley's exact usage: prompt tokens include cached input, as OpenAI counts them."""
    prompt = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    return TokenUsage(
        prompt_tokens=prompt,
        completion_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        cached_tokens=usage.cache_read_input_tokens,
    )


def pending_tokens(transcript: Transcript) -> int:
    """Estimated tokens of the live messages outside the last commit's keep window."""
    live = transcript.live
    outside = live[: max(0, len(live) - transcript.session.keep_recent_count)]
    return sum(estimate_tokens(m.text) for m in outside)


def session_detail(transcript: Transcript, user: User) -> SessionDetail:
    s = transcript.session
    last_commit = s.last_commit_ms
    return SessionDetail(
        session_id=s.session_id,
        created_at=iso(s.created_ms),
        updated_at=iso(s.updated_ms),
        created_by_user_id=s.user_id or "default",
        participant_user_ids=[],
        participant_agent_ids=[],
        message_count=len(transcript.live),
        commit_count=s.commit_count,
        memories_extracted=Memories(),
        last_commit_at=iso(last_commit) if last_commit is not None else "",
        llm_token_usage=token_usage(s.usage),
        embedding_token_usage=EmbeddingUsage(),
        pending_tokens=pending_tokens(transcript),
        keep_recent_count=s.keep_recent_count,
        total_message_count=len(transcript.messages),
        user=user,
    )


def message_out(m: HistoryMessage) -> MessageOut:
    return MessageOut(
        id=f"{m.exchange_id}-{m.role}",
        role=m.role,
        parts=[TextPart(m.text)],
        created_at=iso(m.created_ms),
    )


def abstract_of(summary: str) -> str:
    """An archive's one-line abstract: the summary's first line."""
    return summary.strip().partition("\n")[0]


def archive_out(archive: Archive, transcript: Transcript) -> ArchiveOut:
    messages = transcript.messages[archive.first : archive.last]
    return ArchiveOut(
        archive_id=archive_id(archive.number),
        abstract=abstract_of(archive.summary),
        overview=archive.summary,
        messages=[message_out(m) for m in messages],
    )


def context_out(context: SessionContext) -> SessionContextOut:
    """The newest summary is the overview, older ones the abstracts; tokens are Parley's
    own count, the one the model's context budget is measured in."""
    older = context.summaries[:-1]
    latest = context.summaries[-1] if context.summaries else None
    summary_tokens = {a.number: count_tokens(a.summary) for a in context.summaries}
    archive_tokens = sum(summary_tokens.values())
    return SessionContextOut(
        latest_archive_overview=latest.summary if latest else "",
        pre_archive_abstracts=[
            ArchiveAbstract(archive_id(a.number), a.summary, summary_tokens[a.number])
            for a in older
        ],
        messages=[message_out(m) for m in context.messages],
        estimatedTokens=context.tokens,
        stats=ContextStats(
            total_archives=context.archives_total,
            included_archives=len(context.summaries),
            dropped_archives=context.archives_total - len(context.summaries),
            failed_archives=0,
            active_tokens=context.tokens - archive_tokens,
            archive_tokens=archive_tokens,
        ),
    )
