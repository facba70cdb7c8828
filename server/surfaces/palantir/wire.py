"""The Palantir AIP Agents v2 wire: camelCase bodies and responses, and their mapping.

Request bodies refuse unknown fields, as the Conjure wire spec has Palantir's servers do
("Servers must reject all unexpected JSON fields"), so a misspelt field is a 400 rather than
silently dropped; the document says so (``additionalProperties: false``). Optional response
fields are omitted when empty: the SDK pages while ``nextPageToken`` is present.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from server.surfaces.palantir.ids import (
    ID_PATTERN,
    VERSION_PATTERN,
    agent_rid,
    session_rid,
    trace_id,
    version_string,
)
from streams import types as domain
from streams.agents import Agent as DomainAgent
from streams.clock import iso
from streams.limits import MAX_TITLE, NO_CONTROLS, InputText

TITLE_MAX = MAX_TITLE
# A title longer than TITLE_MAX is cut to it; one longer than this is no title anyone meant,
# and is refused rather than mostly thrown away.
TITLE_ACCEPTED = 10_000
SentTitle = Annotated[
    str,
    msgspec.Meta(
        max_length=TITLE_ACCEPTED,
        pattern=NO_CONTROLS,
        description=f"Cut at {TITLE_MAX} characters; no control characters.",
    ),
]


# Checked by the handler, which answers InvalidAgentVersion (as the SDK expects) for another.
SentVersion = Annotated[
    str,
    msgspec.Meta(
        extra_json_schema={"pattern": VERSION_PATTERN, "examples": ["1.0"]},
        description="N.0 or N; Parley's versions have no minor part.",
    ),
]


# The engine takes at most this many parameter values in a turn (streams.service).
PARAMETERS_MAX = 64
# Checked by the handler, which answers InvalidParameterType for a type Parley does not take.
StringParameter = Annotated[
    dict[str, Any],
    msgspec.Meta(
        description='{"type": "string", "value": ...}: Parley takes no other type.',
        extra_json_schema={
            "properties": {"type": {"const": "string"}, "value": {"type": "string"}},
            "required": ["type", "value"],
        },
    ),
]
ParameterInputs = Annotated[
    dict[str, StringParameter],
    msgspec.Meta(
        description="The model gets them as named context.",
        extra_json_schema={"maxProperties": PARAMETERS_MAX},
    ),
]
# An exchange id: the SDK sends a UUID; an empty one is none. Checked by the handler.
EXCHANGE_ID_PATTERN = f"^$|^{ID_PATTERN}$"
ExchangeId = Annotated[
    str,
    msgspec.Meta(
        extra_json_schema={"pattern": EXCHANGE_ID_PATTERN},
        description="A UUID (or any 1-64 letters, digits, '-' or '_').",
    ),
]


class StrictBody(msgspec.Struct, forbid_unknown_fields=True):
    """A request body (or a part of one): unknown fields are refused."""


class UserTextInput(StrictBody):
    """The user's text as an exchange holds it (and as ragContext takes it, unchecked)."""

    text: str


class TurnInput(StrictBody):
    """The user's turn in a continue: the service refuses blank text."""

    text: InputText


class CreateSessionRequest(StrictBody, rename="camel", kw_only=True):
    agent_version: SentVersion | None = None


class ContinueRequest(StrictBody, rename="camel", kw_only=True):
    """blockingContinue and streamingContinue; ``messageId`` is streaming's only.

    ``parameterInputs`` values are checked by type in the handler, so a type Parley does not
    take gets Palantir's own ``InvalidParameterType`` rather than a generic 400.
    """

    user_input: TurnInput
    parameter_inputs: ParameterInputs = msgspec.field(default_factory=dict)
    contexts_override: list[dict[str, Any]] | None = None
    session_trace_id: ExchangeId | None = None
    message_id: ExchangeId | None = None


class RagContextRequest(StrictBody, rename="camel", kw_only=True):
    """Parley does no retrieval, so nothing here is checked past its shape."""

    user_input: UserTextInput
    parameter_inputs: dict[str, dict[str, Any]] = msgspec.field(default_factory=dict)


class CancelRequest(StrictBody, rename="camel", kw_only=True):
    message_id: str
    response: str | None = None


class UpdateTitleRequest(StrictBody, kw_only=True):
    title: SentTitle


class SessionMetadata(msgspec.Struct, rename="camel", kw_only=True):
    title: str
    created_time: str
    updated_time: str
    message_count: int
    estimated_expires_time: str


class Session(msgspec.Struct, rename="camel", kw_only=True):
    rid: str
    agent_rid: str
    agent_version: str
    metadata: SessionMetadata


class SessionsPage(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    data: list[Session]
    next_page_token: str | None = None


class StringParameterValue(msgspec.Struct, kw_only=True):
    type: Literal["string"] = "string"
    value: str


class SessionExchangeResult(msgspec.Struct, rename="camel", kw_only=True):
    agent_markdown_response: str
    parameter_updates: dict[str, StringParameterValue]
    total_tokens_used: int
    interrupted_output: bool
    session_trace_id: str


class Contexts(msgspec.Struct, rename="camel", kw_only=True):
    object_contexts: list[dict[str, Any]] = msgspec.field(default_factory=list)
    function_retrieved_contexts: list[dict[str, Any]] = msgspec.field(default_factory=list)


class SessionExchange(msgspec.Struct, rename="camel", kw_only=True):
    user_input: UserTextInput
    result: SessionExchangeResult


class Content(msgspec.Struct, kw_only=True):
    exchanges: list[SessionExchange]


class CancelSessionResponse(msgspec.Struct, kw_only=True, omit_defaults=True):
    result: SessionExchangeResult | None = None


class SessionTrace(msgspec.Struct, rename="camel", kw_only=True):
    id: str
    status: Literal["IN_PROGRESS", "COMPLETE"]
    tool_call_groups: list[dict[str, Any]] = msgspec.field(default_factory=list)


class AgentMetadata(msgspec.Struct, rename="camel", kw_only=True):
    display_name: str
    description: str | None = None
    input_placeholder: str | None = None
    suggested_prompts: list[str] = msgspec.field(default_factory=list)


class Agent(msgspec.Struct, kw_only=True):
    rid: str
    version: str
    metadata: AgentMetadata
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)


class AgentVersionDetails(msgspec.Struct, kw_only=True):
    major: int
    minor: int = 0


class AgentVersion(msgspec.Struct, kw_only=True):
    string: str
    version: AgentVersionDetails


class AgentVersionsPage(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    data: list[AgentVersion]
    next_page_token: str | None = None


def session_out(s: domain.Session) -> Session:
    """Palantir counts messages, a user's and the agent's per answered exchange."""
    return Session(
        rid=session_rid(s.session_id),
        agent_rid=agent_rid(s.agent_id),
        agent_version=version_string(s.agent_version),
        metadata=SessionMetadata(
            title=s.title or "",
            created_time=iso(s.created_ms),
            updated_time=iso(s.updated_ms),
            message_count=2 * s.answered_count,
            estimated_expires_time=iso(s.expires_ms),
        ),
    )


def result_out(x: domain.Exchange) -> SessionExchangeResult:
    return SessionExchangeResult(
        agent_markdown_response=x.reply_text,
        parameter_updates={},
        total_tokens_used=x.usage.total_tokens,
        interrupted_output=x.status != "completed",
        session_trace_id=trace_id(x.exchange_id),
    )


def exchange_out(x: domain.Exchange) -> SessionExchange:
    return SessionExchange(user_input=UserTextInput(x.input_text), result=result_out(x))


def agent_out(a: DomainAgent) -> Agent:
    return Agent(
        rid=agent_rid(a.agent_id),
        version=version_string(a.version),
        metadata=AgentMetadata(display_name=a.name, description=a.description or None),
    )


def agent_version_out(a: DomainAgent) -> AgentVersion:
    return AgentVersion(
        string=version_string(a.version), version=AgentVersionDetails(major=a.version)
    )
