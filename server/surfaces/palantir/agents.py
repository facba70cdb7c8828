"""Agents and their versions, as Palantir shows them. Every Parley agent is one."""

from __future__ import annotations

from litestar import Router, get
from litestar.types import Dependencies

from server.surfaces.palantir.params import (
    VERSIONS_TOKEN,
    AgentRid,
    PageSize,
    VersionPath,
    VersionQuery,
    VersionsPageToken,
    page_token_of,
)
from server.surfaces.palantir.resolve import agent_id_of, version_of
from server.surfaces.palantir.wire import (
    Agent,
    AgentVersion,
    AgentVersionsPage,
    agent_out,
    agent_version_out,
)
from streams.agent_store import RedisAgentCatalog


@get("/{agent_rid:str}", summary="An agent, at its latest version or ?version=")
async def get_agent(
    agent_rid: AgentRid,
    agents: RedisAgentCatalog,
    principal: str,
    version: VersionQuery = None,
) -> Agent:
    agent_id = agent_id_of(agent_rid)
    number = version_of(agent_rid, version) if version is not None else None
    return agent_out(await agents.get(agent_id, number))


@get("/{agent_rid:str}/agentVersions", summary="An agent's versions, newest last")
async def list_versions(
    agent_rid: AgentRid,
    agents: RedisAgentCatalog,
    principal: str,
    page_size: PageSize = 100,
    page_token: VersionsPageToken = None,
) -> AgentVersionsPage:
    token = page_token_of(page_token, VERSIONS_TOKEN)
    page = await agents.list_versions(agent_id_of(agent_rid), page_size, token)
    data = [agent_version_out(agent) for agent in page.items]
    return AgentVersionsPage(data=data, next_page_token=page.next_cursor)


@get("/{agent_rid:str}/agentVersions/{version:str}", summary="One version of an agent")
async def get_version(
    agent_rid: AgentRid, version: VersionPath, agents: RedisAgentCatalog, principal: str
) -> AgentVersion:
    agent = await agents.get(agent_id_of(agent_rid), version_of(agent_rid, version))
    return agent_version_out(agent)


def agents_router(dependencies: Dependencies) -> Router:
    return Router(
        path="/api/v2/aipAgents/agents",
        route_handlers=[get_agent, list_versions, get_version],
        dependencies=dependencies,
        tags=["palantir"],
    )
