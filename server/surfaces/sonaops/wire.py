"""The Sonaops wire: camelCase request bodies and the ``data`` of each answer.

Request fields are optional here so that a missing one gets Sonaops's own ``<field> is
required`` (see ``bodies.py``) rather than a decoder's wording; unknown fields are ignored.
"""

from __future__ import annotations

import msgspec

from streams import types as domain
from streams.agents import Agent as DomainAgent

# --- requests ----------------------------------------------------------------------------


class ConversationBody(msgspec.Struct, rename="camel", kw_only=True):
    agent_id: str | None = None


class StreamBody(msgspec.Struct, rename="camel", kw_only=True):
    agent_id: str | None = None
    conversation_id: str | None = None
    text: str | None = None


# --- answers -----------------------------------------------------------------------------


class Conversation(msgspec.Struct, rename="camel", kw_only=True):
    conversation_id: str
    agent_id: str


class AgentItem(msgspec.Struct, rename="camel", kw_only=True):
    agent_id: str
    name: str
    description: str
    version: int


class AgentList(msgspec.Struct, rename="camel", kw_only=True):
    """One page of the agents, ``total`` counting them all."""

    list_: list[AgentItem] = msgspec.field(name="list")
    total: int
    page_num: int
    page_size: int


class Usage(msgspec.Struct, rename="camel", kw_only=True):
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation_input_tokens: int
    total_tokens: int


class Chunk(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    """A stream frame's ``data``: the text since the last frame and the usage so far; the
    last frame (``finished``) also holds the whole reply and its exact usage."""

    conversation_id: str
    message_id: str
    delta: str
    usage: Usage
    finished: bool
    content: str | None = None
    finish_reason: str | None = None


def usage_out(usage: domain.Usage) -> Usage:
    return msgspec.convert(usage, Usage, from_attributes=True)


def agent_out(agent: DomainAgent) -> AgentItem:
    return AgentItem(
        agent_id=agent.agent_id,
        name=agent.name,
        description=agent.description,
        version=agent.version,
    )
