"""Sessions on the wire: the bodies clients send and the session object both clients read.

What this API keeps on a session and the engine has no field for (the environment, memory
stores, incremental streaming, the archive time, tool and MCP server overrides) lives in
the session's ``attributes["qoder"]`` as :class:`Attributes`; the engine never reads it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from server.surfaces.qoder.agent_wire import SessionAgentBody, session_agent_out
from server.surfaces.qoder.bodies import MetadataPatch
from server.surfaces.qoder.errors import api_error
from server.surfaces.qoder.event_wire import USER_MESSAGE_SCHEMA, CacheCreation, cache_creation
from server.surfaces.qoder.ids import session_id
from streams.agents import Agent
from streams.clock import iso
from streams.limits import MAX_INTERVAL_MS, MIN_INTERVAL_MS, Interval, Metadata, Title
from streams.types import Exchange, Session

NAME = "qoder"  # this surface's key in a session's attributes
Json = dict[str, Any]
# What Parley cannot honour, as the OpenAPI document states it: sent otherwise, each is a
# 501 feature_not_available naming it.
NoResources = Annotated[
    list[Json],
    msgspec.Meta(
        description="Parley mounts no resources: empty.", extra_json_schema={"maxItems": 0}
    ),
]
NoVaults = Annotated[
    list[str],
    msgspec.Meta(description="Parley keeps no vaults: empty.", extra_json_schema={"maxItems": 0}),
]
NoBudget = Annotated[
    Json,
    msgspec.Meta(
        description="Parley enforces no spend ceiling: null or absent.",
        extra_json_schema={"not": {}},
    ),
]
# The first turn, checked by event_wire.incoming.
InitialEvents = Annotated[
    list[Annotated[Json, msgspec.Meta(extra_json_schema=USER_MESSAGE_SCHEMA)]],
    msgspec.Meta(
        description="At most one user.message, which starts the first turn.",
        extra_json_schema={"maxItems": 1},
    ),
]


# --- requests --------------------------------------------------------------------------------


class AgentRef(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    type: Literal["agent"] = "agent"
    id: str
    version: int | None = None


class CreateSession(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``resources``, ``vault_ids`` and ``budget`` are accepted empty only; ``initial_events``
    may hold one ``user.message``, started as the session is created."""

    agent: str | AgentRef
    environment_id: str
    title: Title | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)
    resources: NoResources = msgspec.field(default_factory=list)
    vault_ids: NoVaults = msgspec.field(default_factory=list)
    memory_store_ids: list[str] = msgspec.field(default_factory=list)
    delta_flush_interval_ms: Interval | None = None
    incremental_streaming_enabled: bool = False
    initial_events: InitialEvents = msgspec.field(default_factory=list)
    budget: NoBudget | None = None

    def agent_ref(self) -> AgentRef:
        return AgentRef(id=self.agent) if isinstance(self.agent, str) else self.agent


class AgentUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Each list replaces the session's whole one; an absent one stays."""

    tools: list[Json] | msgspec.UnsetType = msgspec.UNSET
    mcp_servers: list[Json] | msgspec.UnsetType = msgspec.UNSET


class UpdateSession(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``metadata``: a key set to null goes, others are set; null removes every key."""

    agent: AgentUpdate | msgspec.UnsetType = msgspec.UNSET
    title: Title | msgspec.UnsetType | None = msgspec.UNSET
    metadata: MetadataPatch | msgspec.UnsetType | None = msgspec.UNSET
    delta_flush_interval_ms: Interval | msgspec.UnsetType = msgspec.UNSET
    vault_ids: NoVaults | msgspec.UnsetType = msgspec.UNSET
    budget: NoBudget | msgspec.UnsetType | None = msgspec.UNSET


def checked_interval(value: int, param: str = "delta_flush_interval_ms") -> int:
    """The engine's refresh interval, within the range every surface allows."""
    if not MIN_INTERVAL_MS <= value <= MAX_INTERVAL_MS:
        raise api_error(
            "invalid_request_error",
            f"{param} must be between {MIN_INTERVAL_MS} and {MAX_INTERVAL_MS} (ms), got {value}",
            param=param,
        )
    return value


def not_available(feature: str, why: str) -> Exception:
    return api_error("feature_not_available", f"{feature} {why}", param=feature, feature=feature)


def merged_metadata(current: dict[str, str], patch: dict[str, str | None] | None) -> dict[str, str]:
    if patch is None:
        return {}
    kept = {k: v for k, v in current.items() if k not in patch}
    return kept | {k: v for k, v in patch.items() if v is not None}


# --- what this API keeps on a session --------------------------------------------------------


class Attributes(msgspec.Struct, kw_only=True, omit_defaults=True):
    environment_id: str | None = None
    memory_store_ids: list[str] = msgspec.field(default_factory=list)
    incremental_streaming_enabled: bool = False
    archived_ms: int | None = None
    tools: list[Json] | None = None
    mcp_servers: list[Json] | None = None


def attributes_of(session: Session) -> Attributes:
    """This API's fields of ``session``; a session made on another surface has none."""
    raw = (session.attributes or {}).get(NAME) or {}
    return msgspec.convert(raw, Attributes)


def attributes_with(session_attributes: Json | None, mine: Attributes) -> Json:
    """A session's attributes with this API's part replaced by ``mine``."""
    return {**(session_attributes or {}), NAME: msgspec.to_builtins(mine)}


# --- the session object ----------------------------------------------------------------------


class Stats(msgspec.Struct, kw_only=True):
    """``active_seconds`` sums the turns' run times; lists leave it null (it reads every
    turn), single sessions have it."""

    active_seconds: float | None
    duration_seconds: float


class SessionUsage(msgspec.Struct, kw_only=True):
    input_tokens: int
    output_tokens: int
    cache_read_input_tokens: int
    cache_creation: CacheCreation


class SessionBody(msgspec.Struct, kw_only=True):
    id: str
    type: Literal["session"] = "session"
    agent_id: str
    agent: SessionAgentBody
    environment_id: str | None
    title: str | None
    metadata: dict[str, str]
    status: str
    resources: list[Json] = msgspec.field(default_factory=list)
    vault_ids: list[str] = msgspec.field(default_factory=list)
    memory_store_ids: list[str]
    delta_flush_interval_ms: int
    incremental_streaming_enabled: bool
    outcome_evaluations: list[Json] = msgspec.field(default_factory=list)
    stats: Stats
    usage: SessionUsage
    archived_at: str | None
    created_at: str
    updated_at: str


class SessionDeleted(msgspec.Struct, kw_only=True):
    id: str
    type: Literal["session_deleted"] = "session_deleted"


class SessionStatus(msgspec.Struct, kw_only=True):
    """Qoder's answer to a cancel."""

    id: str
    type: Literal["session"] = "session"
    status: str


def session_out(
    session: Session, agent: Agent, now: int, turns: list[Exchange] | None = None
) -> SessionBody:
    """``turns``: the session's exchanges, for ``stats.active_seconds``."""
    mine = attributes_of(session)
    shown = session_agent_out(agent)
    if mine.tools is not None:
        shown.tools = mine.tools
    if mine.mcp_servers is not None:
        shown.mcp_servers = mine.mcp_servers
    usage = session.usage
    return SessionBody(
        id=session_id(session.session_id),
        agent_id=agent.agent_id,
        agent=shown,
        environment_id=mine.environment_id,
        title=session.title,
        metadata=session.metadata,
        status=session.status,
        memory_store_ids=mine.memory_store_ids,
        delta_flush_interval_ms=session.refresh_interval_ms,
        incremental_streaming_enabled=mine.incremental_streaming_enabled,
        stats=Stats(
            active_seconds=None if turns is None else _active_seconds(turns, now),
            duration_seconds=max(0, now - session.created_ms) / 1000,
        ),
        usage=SessionUsage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_input_tokens=usage.cache_read_input_tokens,
            cache_creation=cache_creation(usage),
        ),
        archived_at=iso(mine.archived_ms) if mine.archived_ms is not None else None,
        created_at=iso(session.created_ms),
        updated_at=iso(session.updated_ms),
    )


def _active_seconds(turns: list[Exchange], now: int) -> float:
    ran = [(x.completed_ms or now) - x.created_ms for x in turns if not x.imported]
    return sum(max(0, ms) for ms in ran) / 1000
