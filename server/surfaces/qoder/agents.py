"""``/agents``: Parley's one agent registry, as this API shows it.

Every Parley agent is one here, under its own id (``default``, ``echo``...), and an agent
created here (``agent_`` + 24 hex) is one on every other surface. An update publishes a new
immutable version. Agents are global, shared by every principal: reading handlers take
``principal`` only to require a key, while creating, updating and archiving take ``admin``,
as on the native API, since an agent (the default one included) answers every principal's
sessions. Lists go in agent id order.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated, Any

from litestar import Request, Router, get, post
from litestar.params import Parameter
from litestar.types import Dependencies

from server.surfaces.qoder.agent_bodies import CreateAgentBody, UpdateAgentBody
from server.surfaces.qoder.agent_wire import AgentBody, agent_out
from server.surfaces.qoder.bodies import read_body
from server.surfaces.qoder.errors import api_error, archived_error
from server.surfaces.qoder.listing import (
    END,
    AfterId,
    BeforeId,
    CreatedFrom,
    CreatedTo,
    Limit,
    ListBody,
    Page,
    list_body,
    matching,
    moment_ms,
)
from server.surfaces.qoder.listing import position as where
from server.surfaces.qoder.models import model_id
from streams.agent_store import RedisAgentCatalog, definition
from streams.agents import Agent, AgentRecord
from streams.errors import Archived, InvalidInput
from streams.id_index import IdPage, ordered_id

AgentId = Annotated[str, Parameter(description="The agent's id: agent_..., or a Parley id.")]
Version = Annotated[int | None, Parameter(ge=1, description="A version; the latest if none.")]
VERSIONS_PAGE_PATTERN = rf"^(?:[0-9]{{1,9}})?{END}"
VersionsPage = Annotated[
    str | None,
    Parameter(
        description="The next_page of the previous answer: the first version it lists. "
        "Empty: none.",
        schema_extra={"pattern": VERSIONS_PAGE_PATTERN},
    ),
]
AnyRequest = Request[Any, Any, Any]
ID_PREFIX = "agent_"
UNCONFIGURED = "upstream_not_configured"  # the engine's code for an upstream with no key


@post(
    "/",
    summary="Create an agent (version 1)",
    status_code=200,
    opt={"body": CreateAgentBody, "statuses": (403, 404)},
)
async def create_agent(request: AnyRequest, agents: RedisAgentCatalog, admin: str) -> AgentBody:
    body = await read_body(request, CreateAgentBody)
    agent = body.agent(ordered_id(ID_PREFIX))
    created = await _written(agents.create(agent), agent)
    return agent_out(await agents.record(created.agent_id, created.version))


@get("/", summary="List agents at their latest version, in id order")
async def list_agents(
    agents: RedisAgentCatalog,
    principal: str,
    limit: Limit = 20,
    page: Page = None,
    after_id: AfterId = None,
    before_id: BeforeId = None,
    include_archived: bool = False,
    created_from: CreatedFrom = None,
    created_to: CreatedTo = None,
) -> ListBody[AgentBody]:
    at = where(page, after_id, before_id)
    lowest = moment_ms(created_from, "created_at[gte]") or 0
    highest = moment_ms(created_to, "created_at[lte]")

    def keep(record: AgentRecord) -> bool:
        if record.archived_ms is not None and not include_archived:
            return False
        return lowest <= record.created_ms and (highest is None or record.created_ms <= highest)

    found: IdPage[AgentRecord] = await agents.list_records(limit, at, keep)
    return list_body(found, at, agent_out)


@get("/{agent_id:str}", summary="An agent, at its latest version or ?version=")
async def get_agent(
    agent_id: AgentId, agents: RedisAgentCatalog, principal: str, version: Version = None
) -> AgentBody:
    return agent_out(await agents.record(agent_id, version))


@post(
    "/{agent_id:str}",
    summary="Update an agent: publish a new version",
    status_code=200,
    opt={"body": UpdateAgentBody, "body_required": False, "statuses": (403, 409)},
)
async def update_agent(
    agent_id: AgentId, request: AnyRequest, agents: RedisAgentCatalog, admin: str
) -> AgentBody:
    body = await read_body(request, UpdateAgentBody)
    latest = await agents.get(agent_id)
    changed = body.applied_to(latest)
    if definition(changed) == definition(latest) and body.version in (None, latest.version):
        return agent_out(await agents.record(agent_id, latest.version))
    # The version read is the one expected, so a concurrent update makes this a 409 (which
    # the SDK retries, reading the new latest) rather than silently undoing it.
    published = await _written(agents.publish(changed, body.version or latest.version), changed)
    return agent_out(await agents.record(agent_id, published.version))


@post(
    "/{agent_id:str}/archive",
    summary="Archive an agent",
    status_code=200,
    opt={"statuses": (403,)},
)
async def archive_agent(agent_id: AgentId, agents: RedisAgentCatalog, admin: str) -> AgentBody:
    return agent_out(await agents.archive(agent_id))


@get("/{agent_id:str}/versions", summary="An agent's versions, oldest first")
async def list_versions(
    agent_id: AgentId,
    agents: RedisAgentCatalog,
    principal: str,
    limit: Limit = 20,
    page: VersionsPage = None,
) -> ListBody[AgentBody]:
    first = matching(page, "page", VERSIONS_PAGE_PATTERN, "a next_page this API gave (a number)")
    found = await agents.list_version_records(agent_id, limit, first)
    data = [agent_out(record) for record in found.items]
    more = found.next_cursor is not None
    return ListBody(data, None, None, has_more=more, next_page=found.next_cursor)


async def _written(write: Awaitable[Agent], agent: Agent) -> Agent:
    """The registry's refusals in this API's words: its check of the model's upstream names
    ``model``, and a model whose upstream has no key here is not found, as Anthropic's API
    answers a model it does not have; an archived agent says ``agent_archived``."""
    try:
        return await write
    except Archived as error:
        raise archived_error(error) from None
    except InvalidInput as error:
        field = str(error.details.get("field", ""))
        if not field.startswith(("model", "upstream")):
            raise
        message = f"model {model_id(agent.model)!r} cannot be served: {error.message}"
        kind = "not_found_error" if error.code == UNCONFIGURED else "invalid_request_error"
        raise api_error(kind, message, param="model") from None


def agents_router(mount: str, dependencies: Dependencies) -> Router:
    return Router(
        path=f"{mount}/agents",
        route_handlers=[
            create_agent,
            list_agents,
            get_agent,
            update_agent,
            archive_agent,
            list_versions,
        ],
        dependencies=dependencies,
        tags=["qoder"],
    )
