"""``GET /agents`` and ``GET /agents/{agent_id}``: Parley's agent registry as Agno lists agents.

Agents are shared by every principal; the ``principal`` dependency only requires a key.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Router, get
from litestar.params import Parameter
from litestar.types import Dependencies

from server.surfaces.agno.wire import AgentResponse, agent_out
from streams.agent_store import RedisAgentCatalog
from streams.paging import every_item

AgentId = Annotated[str, Parameter(description="The agent's id, as in /v1/agents.")]


@get("/", summary="Every agent, at its latest version, in id order")
async def list_agents(agents: RedisAgentCatalog, principal: str) -> list[AgentResponse]:
    found = await every_item(lambda cursor: agents.list_agents(100, cursor))
    return [agent_out(agent) for agent in found]


@get("/{agent_id:str}", summary="One agent, at its latest version")
async def get_agent(agent_id: AgentId, agents: RedisAgentCatalog, principal: str) -> AgentResponse:
    return agent_out(await agents.resolve(agent_id, None))


def agents_router(dependencies: Dependencies) -> Router:
    return Router(
        path="/agents",
        route_handlers=[list_agents, get_agent],
        dependencies=dependencies,
        tags=["agno"],
    )
