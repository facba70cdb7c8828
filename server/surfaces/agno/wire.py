"""The Agno AgentOS wire: snake_case bodies, schemas and run events, and their mapping.

Agno answers with ``response_model_exclude_none``: a field that is None is left out, which
``omit_defaults`` does here for every optional field. Run events follow Agno's dataclasses
field for field, in their order, so a frame is byte for byte what AgentOS would send.
Request bodies accept unknown fields, as Agno's pydantic models do.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec

from streams import types as domain
from streams.agents import Agent as DomainAgent
from streams.limits import END, ID, ID_RULE, MAX_TITLE, NOT_BLANK, Metadata, Title, UserId

SessionType = Literal["agent", "team", "workflow"]
RunStatus = Literal["RUNNING", "COMPLETED", "CANCELLED", "ERROR"]
# Parley's session ids (the service's ``check_id``), which dashed UUIDs are too.
SESSION_ID = f"^{ID}{END}"
SESSION_ID_RULE = ID_RULE
_EMPTY_OR_ID = f"^(?:{ID})?{END}"  # empty: a new id, as AgentOS makes
# How a form boolean is read, as pydantic reads one: stripped, in any case.
TRUE_WORDS = frozenset({"1", "on", "t", "true", "y", "yes"})
FALSE_WORDS = frozenset({"0", "off", "f", "false", "n", "no"})
_ANY_CASE = "|".join(
    "".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in word)
    for word in sorted(TRUE_WORDS | FALSE_WORDS)
)
BOOLEAN = rf"^\s*(?:{_ANY_CASE})\s*(?![\s\S])"

# The rules a handler checks itself, in its own words, are only described here
# (``extra_json_schema``); msgspec enforces the others while decoding.
SessionName = Annotated[
    Title,
    msgspec.Meta(
        description=f"Up to {MAX_TITLE} characters, no control characters, not blank.",
        extra_json_schema={"minLength": 1, "allOf": [{"pattern": NOT_BLANK}]},
    ),
]
SessionId = Annotated[
    str,
    msgspec.Meta(
        description=f"{SESSION_ID_RULE} (a dashed UUID is one); empty for a new one.",
        extra_json_schema={"maxLength": 64, "pattern": _EMPTY_OR_ID},
    ),
]
RUN_STATUS: dict[domain.ExchangeStatus, RunStatus] = {
    "running": "RUNNING",
    "completed": "COMPLETED",
    "cancelled": "CANCELLED",
    "failed": "ERROR",
}


def iso(ms: int) -> str:
    """Agno's datetimes: UTC to the second, with ``Z``."""
    return datetime.fromtimestamp(ms // 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds(ms: int) -> int:
    return ms // 1000


# --- requests ----------------------------------------------------------------------------


class CreateSessionRequest(msgspec.Struct, kw_only=True):
    """``metadata`` is Parley's session metadata, so its values are strings."""

    session_id: SessionId | None = None
    session_name: SessionName | None = None
    session_state: dict[str, Any] | None = None
    metadata: Metadata | None = None
    user_id: UserId | None = None
    agent_id: str | None = None
    team_id: str | None = None
    workflow_id: str | None = None


class UpdateSessionRequest(msgspec.Struct, kw_only=True):
    """A None field is left as it is (Agno's client leaves out what it does not change)."""

    session_name: SessionName | None = None
    session_state: dict[str, Any] | None = None
    metadata: Metadata | None = None
    summary: dict[str, Any] | None = None


class RenameRequest(msgspec.Struct, kw_only=True):
    session_name: SessionName


class DeleteSessionsRequest(msgspec.Struct, kw_only=True):
    """``session_types[i]`` is the type of ``session_ids[i]``: the two lists must be of the
    same length (refused with 400 otherwise)."""

    session_ids: Annotated[list[str], msgspec.Meta(min_length=1)]
    session_types: Annotated[list[SessionType], msgspec.Meta(min_length=1)]


_Unsupported = Annotated[str, msgspec.Meta(max_length=0, description="Not supported: empty.")]


class RunRequest(msgspec.Struct, kw_only=True):
    """The form of ``POST /agents/{id}/runs`` as sent: every value text. Others are ignored.

    ``stream`` is read as pydantic reads a boolean; an empty ``session_id`` or ``user_id`` is
    none. Parley takes text only, so the media fields must be empty (and files are refused).
    """

    message: Annotated[str, msgspec.Meta(extra_json_schema={"pattern": NOT_BLANK})]
    stream: Annotated[str, msgspec.Meta(extra_json_schema={"pattern": BOOLEAN})] = "true"
    session_id: SessionId = ""
    user_id: UserId = ""
    images: _Unsupported = ""
    audio: _Unsupported = ""
    videos: _Unsupported = ""
    files: _Unsupported = ""
    input_files: _Unsupported = ""


class RunForm(msgspec.Struct, kw_only=True):
    """The form fields of ``POST /agents/{id}/runs`` Parley reads, as read."""

    message: str
    stream: bool = True
    session_id: str | None = None
    user_id: str | None = None


# --- sessions ----------------------------------------------------------------------------


class Metrics(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Agno's metrics, zeros left out as its ``to_dict`` does. ``input_tokens`` counts cached
    input too (Agno's convention), so input plus output is the total."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    time_to_first_token: float | None = None
    duration: float | None = None


class SessionSchema(msgspec.Struct, kw_only=True, omit_defaults=True):
    session_id: str
    session_name: str
    session_state: dict[str, Any] | None = None
    created_at: str
    updated_at: str
    session_type: SessionType
    user_id: str | None = None
    agent_id: str
    metrics: Metrics
    total_tokens: int
    metadata: dict[str, str] | None = None


class PaginationInfo(msgspec.Struct, kw_only=True):
    page: int
    limit: int
    total_pages: int
    total_count: int
    search_time_ms: float


class SessionsPage(msgspec.Struct, kw_only=True):
    data: list[SessionSchema]
    meta: PaginationInfo


class ChatMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One entry of ``chat_history``, as Agno's ``Message.to_dict`` has it."""

    id: str
    content: str
    from_history: bool
    stop_after_tool_call: bool
    role: Literal["user", "assistant"]
    metrics: Metrics | None = None
    created_at: int


class ModelInfo(msgspec.Struct, kw_only=True):
    name: str
    model: str
    provider: str


class AgentData(msgspec.Struct, kw_only=True):
    name: str
    agent_id: str
    model: ModelInfo


class AgentSessionDetailSchema(msgspec.Struct, kw_only=True, omit_defaults=True):
    user_id: str | None = None
    agent_session_id: str
    session_id: str
    session_name: str
    session_state: dict[str, Any] | None = None
    agent_id: str
    total_tokens: int
    agent_data: AgentData
    metrics: Metrics
    metadata: dict[str, str] | None = None
    chat_history: list[ChatMessage]
    created_at: str
    updated_at: str


class RunSchema(msgspec.Struct, kw_only=True, omit_defaults=True):
    run_id: str
    agent_id: str
    user_id: str | None = None
    status: RunStatus
    run_input: str
    content: str
    run_response_format: Literal["text"]
    metrics: Metrics
    created_at: str


# --- runs --------------------------------------------------------------------------------


class RunInput(msgspec.Struct, kw_only=True):
    input_content: str


class RunOutput(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A ``stream=false`` run, as ``RunOutput.to_dict`` has it."""

    run_id: str
    agent_id: str
    agent_name: str
    session_id: str
    user_id: str | None = None
    content: str
    content_type: str
    model: str
    model_provider: str
    created_at: int
    status: RunStatus
    metrics: Metrics
    input: RunInput


class _Event(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The fields every agent run event starts with, in Agno's order."""

    created_at: int
    event: str
    agent_id: str
    agent_name: str
    run_id: str
    session_id: str
    nested_depth: int


class RunStarted(_Event, kw_only=True, omit_defaults=True):
    model: str
    model_provider: str


class RunContent(_Event, kw_only=True, omit_defaults=True):
    content: str
    workflow_agent: bool
    content_type: str


class RunCompleted(_Event, kw_only=True, omit_defaults=True):
    content: str
    content_type: str
    metrics: Metrics


class RunError(_Event, kw_only=True, omit_defaults=True):
    content: str
    error_type: str | None = None


class RunCancelled(_Event, kw_only=True, omit_defaults=True):
    content: str
    reason: str


# --- agents ------------------------------------------------------------------------------


class AgentResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    id: str
    name: str
    description: str | None = None
    model: ModelInfo
    metadata: dict[str, str] | None = None


# --- from domain types -------------------------------------------------------------------


def usage_metrics(usage: domain.Usage) -> Metrics:
    cached = usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    return Metrics(
        input_tokens=usage.input_tokens + cached,
        output_tokens=usage.output_tokens,
        total_tokens=usage.total_tokens,
        cache_read_tokens=usage.cache_read_input_tokens,
        cache_write_tokens=usage.cache_creation_input_tokens,
    )


def run_metrics(x: domain.Exchange) -> Metrics:
    """Usage plus timings: first token and duration, both from when the run began."""
    metrics = usage_metrics(x.usage)
    if x.first_token_ms is not None:
        metrics.time_to_first_token = (x.first_token_ms - x.created_ms) / 1000
    if x.completed_ms is not None:
        metrics.duration = (x.completed_ms - x.created_ms) / 1000
    return metrics


def run_content(x: domain.Exchange) -> str:
    """The reply; a failed run with no text says why, as Agno stores it."""
    if x.status == "failed" and not x.reply_text and x.error is not None:
        return x.error.message
    return x.reply_text


def model_info(agent: DomainAgent) -> ModelInfo:
    return ModelInfo(name=agent.model.name, model=agent.model.name, provider=agent.model.provider)


def session_name(s: domain.Session, first_input: str | None) -> str:
    """As AgentOS names a session: its name if it was given one, else its first message."""
    return s.title or first_input or ""


def session_out(s: domain.Session, first_input: str | None = None) -> SessionSchema:
    return SessionSchema(
        session_id=s.session_id,
        session_name=session_name(s, first_input),
        session_state=s.state,
        created_at=iso(s.created_ms),
        updated_at=iso(s.updated_ms),
        session_type="agent",
        user_id=s.user_id,
        agent_id=s.agent_id,
        metrics=usage_metrics(s.usage),
        total_tokens=s.usage.total_tokens,
        metadata=s.metadata or None,
    )


def chat_history(exchanges: list[domain.Exchange]) -> list[ChatMessage]:
    """Each finished run's user message, then its reply when it has one."""
    messages: list[ChatMessage] = []
    for x in exchanges:
        if x.status == "running" or x.dropped:
            continue
        created = seconds(x.created_ms)
        messages.append(_message(f"{x.exchange_id}-user", x.input_text, "user", created))
        if x.reply_text:
            reply = _message(
                f"{x.exchange_id}-assistant",
                x.reply_text,
                "assistant",
                seconds(x.completed_ms or x.created_ms),
            )
            reply.metrics = usage_metrics(x.usage)
            messages.append(reply)
    return messages


def _message(
    message_id: str, content: str, role: Literal["user", "assistant"], created: int
) -> ChatMessage:
    return ChatMessage(
        id=message_id,
        content=content,
        from_history=False,
        stop_after_tool_call=False,
        role=role,
        created_at=created,
    )


def session_detail(
    s: domain.Session, agent: DomainAgent, exchanges: list[domain.Exchange]
) -> AgentSessionDetailSchema:
    return AgentSessionDetailSchema(
        user_id=s.user_id,
        agent_session_id=s.session_id,
        session_id=s.session_id,
        session_name=session_name(s, exchanges[0].input_text if exchanges else None),
        session_state=s.state,
        agent_id=s.agent_id,
        total_tokens=s.usage.total_tokens,
        agent_data=AgentData(name=agent.name, agent_id=agent.agent_id, model=model_info(agent)),
        metrics=usage_metrics(s.usage),
        metadata=s.metadata or None,
        chat_history=chat_history(exchanges),
        created_at=iso(s.created_ms),
        updated_at=iso(s.updated_ms),
    )


def run_out(x: domain.Exchange, s: domain.Session) -> RunSchema:
    return RunSchema(
        run_id=x.exchange_id,
        agent_id=s.agent_id,
        user_id=s.user_id,
        status=RUN_STATUS[x.status],
        run_input=x.input_text,
        content=run_content(x),
        run_response_format="text",
        metrics=run_metrics(x),
        created_at=iso(x.created_ms),
    )


def run_output(x: domain.Exchange, s: domain.Session, agent: DomainAgent) -> RunOutput:
    return RunOutput(
        run_id=x.exchange_id,
        agent_id=agent.agent_id,
        agent_name=agent.name,
        session_id=s.session_id,
        user_id=s.user_id,
        content=run_content(x),
        content_type="str",
        model=agent.model.name,
        model_provider=agent.model.provider,
        created_at=seconds(x.created_ms),
        status=RUN_STATUS[x.status],
        metrics=run_metrics(x),
        input=RunInput(input_content=x.input_text),
    )


def agent_out(a: DomainAgent) -> AgentResponse:
    return AgentResponse(
        id=a.agent_id,
        name=a.name,
        description=a.description or None,
        model=model_info(a),
        metadata=a.metadata or None,
    )
