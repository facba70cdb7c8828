"""``/v1/agents``: the agent registry. Agents are global, shared by every principal.

Reading handlers take the ``principal`` dependency only to require a valid API key when
authentication is on; agents belong to nobody in particular. Writing ones take ``admin``:
an agent (the default one included) answers every principal's sessions, so only an admin key
may create one or publish a version.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Router, get, post
from litestar.params import Parameter
from litestar.status_codes import HTTP_201_CREATED
from litestar.types import Dependencies

from server.surfaces.cursors import KeysetCursorQuery, OffsetCursorQuery
from server.surfaces.native.agent_wire import AGENT_ID_PATTERN, CreateAgent, PublishVersion
from server.surfaces.native.wire import Page
from streams.agent_store import RedisAgentCatalog
from streams.agents import Agent

AgentIdParam = Annotated[str, Parameter(description="The agent's id.", pattern=AGENT_ID_PATTERN)]
Limit = Annotated[int, Parameter(ge=1, le=100)]


@post(
    "/",
    summary="Create an agent (version 1)",
    status_code=HTTP_201_CREATED,
    opt={"statuses": (409,), "creates": {"agent_id": "/agentId"}},
)
async def create_agent(data: CreateAgent, agents: RedisAgentCatalog, admin: str) -> Agent:
    return await agents.create(data.agent())


@get("/", summary="List agents, each at its latest version, in agentId order")
async def list_agents(
    agents: RedisAgentCatalog, principal: str, limit: Limit = 20, cursor: KeysetCursorQuery = None
) -> Page[Agent]:
    page = await agents.list_agents(limit, cursor)
    return Page(page.items, page.next_cursor)


@get("/{agent_id:str}", summary="An agent's latest version")
async def get_agent(agent_id: AgentIdParam, agents: RedisAgentCatalog, principal: str) -> Agent:
    return await agents.get(agent_id)


@post(
    "/{agent_id:str}/versions",
    summary="Publish a new immutable version; omitted fields carry over from the latest",
    status_code=HTTP_201_CREATED,
)
async def publish_version(
    agent_id: AgentIdParam, data: PublishVersion, agents: RedisAgentCatalog, admin: str
) -> Agent:
    latest = await agents.get(agent_id)
    return await agents.publish(data.applied_to(latest))


@get("/{agent_id:str}/versions", summary="An agent's versions, oldest first")
async def list_versions(
    agent_id: AgentIdParam,
    agents: RedisAgentCatalog,
    principal: str,
    limit: Limit = 20,
    cursor: OffsetCursorQuery = None,
) -> Page[Agent]:
    page = await agents.list_versions(agent_id, limit, cursor)
    return Page(page.items, page.next_cursor)


@get("/{agent_id:str}/versions/{version:int}", summary="One version of an agent")
async def get_version(
    agent_id: AgentIdParam,
    version: Annotated[int, Parameter(ge=1)],
    agents: RedisAgentCatalog,
    principal: str,
) -> Agent:
    return await agents.get(agent_id, version)


def agents_router(dependencies: Dependencies) -> Router:
    return Router(
        dependencies=dependencies,
        path="/v1/agents",
        route_handlers=[
            create_agent,
            list_agents,
            get_agent,
            publish_version,
            list_versions,
            get_version,
        ],
        tags=["agents"],
    )
