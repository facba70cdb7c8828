"""Request bodies of ``/agents``: what an agent is made of, as a Parley agent.

``system`` is Parley's ``instructions`` (Qoder's name, also taken). ``tools`` and
``mcp_servers`` are checked for shape and stored, never executed: Parley runs no tools.
Skills, multiagent orchestration and execution identities other than the default service
account are refused, since nothing here would honour them. ``model.effort``, ``speed`` and
``inference_geo`` are accepted and ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from server.surfaces.qoder.bodies import MetadataPatch, checked_metadata
from server.surfaces.qoder.errors import api_error
from server.surfaces.qoder.models import MODEL_PATTERN, model_spec
from streams.agents import Agent
from streams.limits import NO_CONTROLS, Metadata

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_CONTROLS)]
Description = Annotated[str, msgspec.Meta(max_length=2_000)]
System = Annotated[str, msgspec.Meta(max_length=200_000)]
# The pattern is checked by model_spec, whose refusal lists the models there are.
ModelName = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=256,
        description="synthetic-<mode>, claude-…, gpt-… or openai/<name>; one whose upstream "
        "has no key here is not found.",
        extra_json_schema={"pattern": MODEL_PATTERN},
    ),
]
ServerName = Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=2_000)]
TOOL_TYPES = ("agent_toolset_20260401", "mcp_toolset", "custom")
_TOOL = {
    "type": "object",
    "properties": {"type": {"enum": list(TOOL_TYPES)}},
    "required": ["type"],
    "if": {"properties": {"type": {"const": "mcp_toolset"}}},
    "then": {
        "properties": {"mcp_server_name": {"type": "string"}},
        "required": ["mcp_server_name"],
    },
}
Tool = Annotated[dict[str, Any], msgspec.Meta(extra_json_schema=_TOOL)]
Tools = Annotated[
    list[Tool],
    msgspec.Meta(
        max_length=256,
        description="Stored, never run. An mcp_toolset names a server of mcp_servers.",
    ),
]


class ModelConfig(msgspec.Struct, forbid_unknown_fields=True):
    id: ModelName
    effort: str | dict[str, Any] | None = None
    inference_geo: str | None = None
    speed: Literal["standard", "fast"] | None = None


Model = ModelName | ModelConfig


class McpServer(msgspec.Struct, forbid_unknown_fields=True):
    name: ServerName
    type: Literal["url"]
    url: Url


McpServers = Annotated[
    list[McpServer],
    msgspec.Meta(
        max_length=20,
        description="Names unique, each used by an mcp_toolset of tools. Stored, never run.",
    ),
]


_NONE = {"maxItems": 0}


class ServiceAccount(msgspec.Struct, tag_field="type", tag="service_account"):
    """The only execution identity: Parley calls models as itself."""


class _Unsupported(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Fields Anthropic's API takes that Parley cannot honour: refused unless empty."""

    skills: (
        Annotated[
            list[dict[str, Any]],
            msgspec.Meta(description="Parley has no skills: empty.", extra_json_schema=_NONE),
        ]
        | msgspec.UnsetType
        | None
    ) = msgspec.UNSET
    multiagent: (
        Annotated[
            dict[str, Any],
            msgspec.Meta(
                description="Parley agents are single-threaded: empty.",
                extra_json_schema={"maxProperties": 0},
            ),
        ]
        | msgspec.UnsetType
        | None
    ) = msgspec.UNSET
    execution_identity: ServiceAccount | msgspec.UnsetType | None = msgspec.UNSET

    def refuse_what_is_set(self) -> None:
        if self.skills:
            raise api_error("invalid_request_error", "Parley has no skills", param="skills")
        if self.multiagent:
            raise api_error(
                "invalid_request_error", "Parley agents are single-threaded", param="multiagent"
            )


class CreateAgentBody(_Unsupported, kw_only=True, forbid_unknown_fields=True):
    model: Model
    name: Name
    description: Description | None = None
    system: System | None = None
    instructions: System | None = None
    tools: Tools | None = None
    mcp_servers: McpServers | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)

    def agent(self, agent_id: str) -> Agent:
        self.refuse_what_is_set()
        checked_metadata(self.metadata)
        tools, servers = _checked_tools(self.tools or [], self.mcp_servers or [])
        return Agent(
            agent_id=agent_id,
            name=self.name,
            description=self.description or "",
            instructions=_instructions(self.system, self.instructions),
            model=model_spec(_model_name(self.model)),
            metadata=self.metadata,
            tools=tools,
            mcp_servers=servers,
        )


class UpdateAgentBody(_Unsupported, kw_only=True, forbid_unknown_fields=True):
    """A new version: each field given replaces the latest's (``null`` or empty clears it,
    ``metadata`` is a patch whose null values delete); the rest carry over.

    ``version``, when given, must be the latest version, or the update is a 409.
    """

    version: Annotated[int, msgspec.Meta(ge=1)] | None = None
    model: Model | msgspec.UnsetType = msgspec.UNSET
    name: Name | msgspec.UnsetType = msgspec.UNSET
    description: Description | msgspec.UnsetType | None = msgspec.UNSET
    system: System | msgspec.UnsetType | None = msgspec.UNSET
    instructions: System | msgspec.UnsetType | None = msgspec.UNSET
    tools: Tools | msgspec.UnsetType | None = msgspec.UNSET
    mcp_servers: McpServers | msgspec.UnsetType | None = msgspec.UNSET
    metadata: MetadataPatch | msgspec.UnsetType | None = msgspec.UNSET

    def applied_to(self, latest: Agent) -> Agent:
        self.refuse_what_is_set()
        changes: dict[str, Any] = {}
        if self.name:
            changes["name"] = self.name
        if self.description is not msgspec.UNSET:
            changes["description"] = self.description or ""
        if self.system is not msgspec.UNSET or self.instructions is not msgspec.UNSET:
            changes["instructions"] = _instructions(self.system, self.instructions)
        if self.model:
            changes.update(_model_changes(_model_name(self.model), latest))
        if self.metadata:
            changes["metadata"] = _patched(latest.metadata, self.metadata)
        if self.tools is not msgspec.UNSET or self.mcp_servers is not msgspec.UNSET:
            changes.update(self._tool_changes(latest))
        return msgspec.structs.replace(latest, **changes)

    def _tool_changes(self, latest: Agent) -> dict[str, Any]:
        tools = (latest.tools or []) if self.tools is msgspec.UNSET else (self.tools or [])
        servers = (
            [msgspec.convert(s, McpServer) for s in latest.mcp_servers or []]
            if self.mcp_servers is msgspec.UNSET
            else self.mcp_servers or []
        )
        checked_tools, checked_servers = _checked_tools(tools, servers)
        return {"tools": checked_tools, "mcp_servers": checked_servers}


def _model_name(model: Model) -> str:
    return model if isinstance(model, str) else model.id


def _model_changes(model: str, latest: Agent) -> dict[str, Any]:
    """The new model, and no upstream of the old one's unless the provider stays the same."""
    spec = model_spec(model, latest.model)
    same_provider = spec.provider == latest.model.provider
    return {"model": spec, "upstream": latest.upstream if same_provider else None}


def _instructions(*given: str | msgspec.UnsetType | None) -> str:
    """``system`` and ``instructions`` name the same text: one, or both alike; none clears."""
    texts = {text for text in given if isinstance(text, str)}
    if len(texts) > 1:
        raise api_error(
            "invalid_request_error",
            "system and instructions are the same text: give one, or both alike",
            param="instructions",
        )
    return texts.pop() if texts else ""


def _patched(metadata: dict[str, str], patch: dict[str, str | None]) -> dict[str, str]:
    merged = {key: value for key, value in {**metadata, **patch}.items() if value is not None}
    return checked_metadata(merged)


def _checked_tools(
    tools: list[dict[str, Any]], servers: list[McpServer]
) -> tuple[list[dict[str, Any]] | msgspec.UnsetType, list[dict[str, Any]] | msgspec.UnsetType]:
    """Tools of known types; MCP servers named once each, each used by an ``mcp_toolset``.

    Empty lists come back unset, so agents without tools are stored as before tools existed.
    """
    names = [server.name for server in servers]
    if len(set(names)) < len(names):
        raise api_error("invalid_request_error", "names must be unique", param="mcp_servers")
    used = set()
    for i, tool in enumerate(tools):
        kind = tool.get("type")
        if kind not in TOOL_TYPES:
            message = f"type must be one of {', '.join(TOOL_TYPES)}"
            raise api_error("invalid_request_error", message, param=f"tools[{i}].type")
        if kind == "mcp_toolset":
            used.add(_server_of(tool, i, names))
    unused = [name for name in names if name not in used]
    if unused:
        message = f"{unused[0]!r} is used by no mcp_toolset in tools"
        raise api_error("invalid_request_error", message, param="mcp_servers")
    stored = [msgspec.to_builtins(server) for server in servers]
    return tools or msgspec.UNSET, stored or msgspec.UNSET


def _server_of(tool: dict[str, Any], i: int, names: list[str]) -> str:
    name = tool.get("mcp_server_name")
    if not isinstance(name, str) or name not in names:
        message = "must name a server of mcp_servers"
        raise api_error("invalid_request_error", message, param=f"tools[{i}].mcp_server_name")
    return name
