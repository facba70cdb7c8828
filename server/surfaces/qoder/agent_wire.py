"""The ``agent`` object of this API, from any Parley agent.

Two shapes, as the anthropic SDK types them: :func:`agent_out` is the agent resource
(``BetaManagedAgentsAgent``: with metadata and dates), :func:`session_agent_out` the
snapshot a session embeds (``BetaManagedAgentsSessionAgent``: the same without them), which
needs only the engine's :class:`~streams.agents.Agent`.

``model`` is ``{"id": ...}`` (:mod:`server.surfaces.qoder.models`); ``system`` and
``instructions`` are both Parley's instructions; ``skills`` is always empty, ``multiagent``
null and ``execution_identity`` the service account, since Parley has no other.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from server.surfaces.qoder.models import model_id
from streams.agents import Agent, AgentRecord
from streams.clock import iso


class ModelBody(msgspec.Struct):
    id: str


class ExecutionIdentity(msgspec.Struct):
    type: Literal["service_account"] = "service_account"


class SessionAgentBody(msgspec.Struct, kw_only=True):
    id: str
    type: Literal["agent"] = "agent"
    name: str
    description: str | None
    model: ModelBody
    system: str | None
    instructions: str | None
    tools: list[dict[str, Any]]
    mcp_servers: list[dict[str, Any]]
    skills: list[dict[str, Any]] = msgspec.field(default_factory=list)
    multiagent: None = None
    execution_identity: ExecutionIdentity = msgspec.field(default_factory=ExecutionIdentity)
    version: int


class AgentBody(SessionAgentBody, kw_only=True):
    """``created_at``: when version 1 was published; ``updated_at``: when this one was."""

    metadata: dict[str, str]
    created_at: str
    updated_at: str
    archived_at: str | None


def session_agent_out(agent: Agent) -> SessionAgentBody:
    return SessionAgentBody(**_fields(agent))


def agent_out(record: AgentRecord) -> AgentBody:
    archived = record.archived_ms
    return AgentBody(
        **_fields(record.agent),
        metadata=record.agent.metadata,
        created_at=iso(record.created_ms),
        updated_at=iso(record.published_ms),
        archived_at=iso(archived) if archived is not None else None,
    )


def _fields(agent: Agent) -> dict[str, Any]:
    return {
        "id": agent.agent_id,
        "name": agent.name,
        "description": agent.description or None,
        "model": ModelBody(model_id(agent.model)),
        "system": agent.instructions or None,
        "instructions": agent.instructions or None,
        "tools": agent.tools or [],
        "mcp_servers": agent.mcp_servers or [],
        "version": agent.version,
    }
