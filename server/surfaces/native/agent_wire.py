"""Request bodies of ``/v1/agents`` and the agents file. Responses are the engine's Agent.

Shapes and ranges are checked here; model params and credentials by
:func:`streams.agent_checks.check_agent`, which needs the engine's knowledge.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from streams.agents import Agent, UpstreamRef
from streams.backends.base import ModelSpec
from streams.limits import (
    ID,
    MAX_INTERVAL_MS,
    MIN_INTERVAL_MS,
    NO_CONTROLS,
    Metadata,
    check_metadata,
)

AGENT_ID_PATTERN = f"^{ID}$"

AgentId = Annotated[
    str,
    msgspec.Meta(pattern=AGENT_ID_PATTERN, description="1-64 letters, digits, '-' or '_'."),
]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_CONTROLS)]
Description = Annotated[str, msgspec.Meta(max_length=2_000)]
Instructions = Annotated[str, msgspec.Meta(max_length=200_000, description="The system prompt.")]
RefreshInterval = Annotated[
    int,
    msgspec.Meta(
        ge=MIN_INTERVAL_MS,
        le=MAX_INTERVAL_MS,
        description="Default refresh interval of its sessions, ms.",
    ),
]
ContextBudget = Annotated[
    int,
    msgspec.Meta(
        gt=0,
        le=10_000_000,
        description="Most tokens sent upstream: instructions, history and the new input.",
    ),
]
BaseUrl = Annotated[str, msgspec.Meta(min_length=1, max_length=2_000)]
KeyEnv = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=100,
        description="NAME of an environment variable PARLEY_UPSTREAM_KEY_<NAME>, never a key.",
    ),
]


class ModelBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    provider: Literal["synthetic", "openai", "anthropic"] = "synthetic"
    name: Name = "synthetic-lorem"
    params: dict[str, Any] = msgspec.field(default_factory=dict)

    def spec(self) -> ModelSpec:
        return ModelSpec(provider=self.provider, name=self.name, params=self.params)


class UpstreamBody(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    base_url: BaseUrl | None = None
    api_key_env: KeyEnv | None = None

    def ref(self) -> UpstreamRef | None:
        if self.base_url is None and self.api_key_env is None:
            return None
        return UpstreamRef(base_url=self.base_url, api_key_env=self.api_key_env)


class CreateAgent(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    agent_id: AgentId
    name: Name
    description: Description = ""
    instructions: Instructions = ""
    model: ModelBody = msgspec.field(default_factory=ModelBody)
    default_refresh_interval_ms: RefreshInterval = 100
    context_budget_tokens: ContextBudget = 100_000
    metadata: Metadata = msgspec.field(default_factory=dict)
    upstream: UpstreamBody | None = None

    def __post_init__(self) -> None:
        check_metadata(self.metadata)

    def agent(self) -> Agent:
        return Agent(
            agent_id=self.agent_id,
            name=self.name,
            description=self.description,
            instructions=self.instructions,
            model=self.model.spec(),
            default_refresh_interval_ms=self.default_refresh_interval_ms,
            context_budget_tokens=self.context_budget_tokens,
            metadata=self.metadata,
            upstream=self.upstream.ref() if self.upstream else None,
        )


class PublishVersion(msgspec.Struct, rename="camel", kw_only=True, forbid_unknown_fields=True):
    """A new version: each field given replaces the latest version's; the rest carry over.

    ``upstream: null`` removes the latest version's upstream; ``model`` is replaced whole.
    """

    name: Name | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType = msgspec.UNSET
    instructions: Instructions | msgspec.UnsetType = msgspec.UNSET
    model: ModelBody | msgspec.UnsetType = msgspec.UNSET
    default_refresh_interval_ms: RefreshInterval | msgspec.UnsetType = msgspec.UNSET
    context_budget_tokens: ContextBudget | msgspec.UnsetType = msgspec.UNSET
    metadata: Metadata | msgspec.UnsetType = msgspec.UNSET
    upstream: UpstreamBody | msgspec.UnsetType | None = msgspec.UNSET

    def __post_init__(self) -> None:
        check_metadata(self.metadata)

    def applied_to(self, latest: Agent) -> Agent:
        changes: dict[str, Any] = {
            name: getattr(self, name)
            for name in self.__struct_fields__
            if getattr(self, name) is not msgspec.UNSET
        }
        if isinstance(self.model, ModelBody):
            changes["model"] = self.model.spec()
        if isinstance(self.upstream, UpstreamBody) or self.upstream is None:
            changes["upstream"] = self.upstream.ref() if self.upstream else None
        return msgspec.structs.replace(latest, **changes)
