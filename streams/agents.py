"""Agents: who answers a session, with which model and system prompt."""

from __future__ import annotations

from typing import Any, Protocol

import msgspec

from streams.backends.base import ModelSpec
from streams.clock import iso, now_ms

DEFAULT_AGENT_ID = "default"


class UpstreamRef(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    """Where an agent's model lives when not at the server-wide endpoint.

    ``apiKeyEnv`` names an environment variable of the server process; the key itself is
    never stored or shown.
    """

    base_url: str | None = None
    api_key_env: str | None = None


class Agent(msgspec.Struct, rename="camel", kw_only=True):
    """One immutable version of an agent.

    ``tools`` and ``mcp_servers`` are stored and shown, never executed: Parley runs no tools.
    Unset (the usual case) they are left out of the JSON, so agents without them read, and
    are stored, exactly as before these fields existed.
    """

    agent_id: str
    version: int = 1
    name: str
    description: str = ""
    instructions: str = ""
    model: ModelSpec = msgspec.field(default_factory=ModelSpec)
    default_refresh_interval_ms: int = 100
    context_budget_tokens: int = 100_000
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    upstream: UpstreamRef | None = None
    tools: list[dict[str, Any]] | msgspec.UnsetType = msgspec.UNSET
    mcp_servers: list[dict[str, Any]] | msgspec.UnsetType = msgspec.UNSET
    created_at: str = msgspec.field(default_factory=lambda: iso(now_ms()))


class AgentRecord(msgspec.Struct, kw_only=True):
    """One version of an agent with the agent's own dates, which no version holds.

    ``created_ms``: when version 1 was published; ``published_ms``: when this one was;
    ``archived_ms``: when the agent was archived, if it was (archiving is not a version).
    """

    agent: Agent
    created_ms: int
    published_ms: int
    archived_ms: int | None = None


class AgentCatalog(Protocol):
    async def resolve(self, agent_id: str, version: int | None) -> Agent:
        """The given version, or the latest; :class:`NotFound` when there is none."""
        ...


def builtin_agents() -> list[Agent]:
    return [
        Agent(
            agent_id=DEFAULT_AGENT_ID,
            name="Default (synthetic)",
            description="A deterministic synthetic model for trying the API and load tests.",
            model=ModelSpec(
                provider="synthetic",
                name="synthetic-lorem",
                params={"mode": "lorem", "tokensPerSecond": 25, "replyTokens": 80},
            ),
        ),
        Agent(
            agent_id="echo",
            name="Echo (synthetic)",
            description="Replies with the user's own text, one token at a time.",
            model=ModelSpec(
                provider="synthetic",
                name="synthetic-echo",
                params={"mode": "echo", "tokensPerSecond": 50, "firstTokenLatencyMs": 50},
            ),
        ),
    ]
