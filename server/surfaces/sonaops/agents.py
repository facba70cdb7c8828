"""``GET /v1/agent/list``: the agents this key can talk to, a page at a time.

Agents are shared by every principal, so the list is the registry, each agent at its latest
version, in agentId order; ``total`` counts them all. ``pageNum`` (from 1) and ``pageSize``
(1-100, default 20) page it, as Sonaops pages its lists.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Router, get
from litestar.params import QueryParameter
from litestar.types import Dependencies

from server.surfaces.sonaops.bodies import query_int
from server.surfaces.sonaops.envelope import Envelope, ok
from server.surfaces.sonaops.wire import AgentList, agent_out
from streams.agent_store import RedisAgentCatalog
from streams.paging import every_item

PAGE_SIZE = 20
PAGE_SIZE_MAX = 100
PAGE_NUM_MAX = 100_000


def _count(name: str, default: int, high: int, description: str) -> Any:
    """A query count as the document states it. The handler reads the text itself, so a
    value out of range is Sonaops's 10400 in its own words (at HTTP 200), not Litestar's."""
    described = {"one_of": None, "type": "integer", "minimum": 1, "maximum": high}
    return QueryParameter(
        name=name, description=description, schema_extra={**described, "default": default}
    )


PageNum = Annotated[str | None, _count("pageNum", 1, PAGE_NUM_MAX, "The page, from 1.")]
PageSize = Annotated[str | None, _count("pageSize", PAGE_SIZE, PAGE_SIZE_MAX, "Agents per page.")]


@get("/list", summary="The agents usable with this key")
async def list_agents(
    request: Request[Any, Any, Any],
    agents: RedisAgentCatalog,
    principal: str,
    page_num_text: PageNum = None,
    page_size_text: PageSize = None,
) -> Envelope[AgentList]:
    page_num = query_int(page_num_text, "pageNum", 1, PAGE_NUM_MAX)
    page_size = query_int(page_size_text, "pageSize", PAGE_SIZE, PAGE_SIZE_MAX)
    found = await every_item(lambda cursor: agents.list_agents(PAGE_SIZE_MAX, cursor))
    start = (page_num - 1) * page_size
    page = [agent_out(agent) for agent in found[start : start + page_size]]
    data = AgentList(list_=page, total=len(found), page_num=page_num, page_size=page_size)
    return ok(request.scope, data)


def agents_router(dependencies: Dependencies) -> Router:
    return Router(
        path="/v1/agent",
        route_handlers=[list_agents],
        dependencies=dependencies,
        tags=["sonaops"],
    )
