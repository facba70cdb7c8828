"""``/environments``: create, read, list, update, archive and delete environments.

An environment belongs to the principal that created it: each handler sees only the
caller's own, and another principal's id is ``not_found_error`` (never a refusal, so ids do
not leak). Lists page over the caller's environments only.
"""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Router, delete, get, post
from litestar.params import Parameter
from litestar.types import Dependencies

from server.surfaces.qoder.bodies import read_body
from server.surfaces.qoder.environment_wire import (
    CreateEnvironment,
    EnvironmentBody,
    EnvironmentDeleted,
    UpdateEnvironment,
    environment_out,
)
from server.surfaces.qoder.errors import archived_error
from server.surfaces.qoder.listing import AfterId, BeforeId, Limit, ListBody, Page, list_body
from server.surfaces.qoder.listing import position as where
from streams.environments import RedisEnvironments
from streams.errors import Archived

EnvId = Annotated[str, Parameter(description="The environment's id, env_...")]
AnyRequest = Request[Any, Any, Any]


@post("/", summary="Create an environment", status_code=200, opt={"body": CreateEnvironment})
async def create_environment(
    request: AnyRequest, environments: RedisEnvironments, principal: str
) -> EnvironmentBody:
    body = await read_body(request, CreateEnvironment)
    return environment_out(await environments.create(body.environment(principal)))


@get("/", summary="List environments, oldest first")
async def list_environments(
    environments: RedisEnvironments,
    principal: str,
    limit: Limit = 20,
    page: Page = None,
    after_id: AfterId = None,
    before_id: BeforeId = None,
    include_archived: bool = False,
) -> ListBody[EnvironmentBody]:
    at = where(page, after_id, before_id)
    found = await environments.list_environments(
        principal, limit, at, include_archived=include_archived
    )
    return list_body(found, at, environment_out)


@get("/{environment_id:str}", summary="An environment")
async def get_environment(
    environment_id: EnvId, environments: RedisEnvironments, principal: str
) -> EnvironmentBody:
    return environment_out(await environments.get(principal, environment_id))


@post(
    "/{environment_id:str}",
    summary="Update an environment",
    status_code=200,
    opt={"body": UpdateEnvironment, "body_required": False, "statuses": (409,)},
)
async def update_environment(
    environment_id: EnvId, request: AnyRequest, environments: RedisEnvironments, principal: str
) -> EnvironmentBody:
    body = await read_body(request, UpdateEnvironment)
    try:
        changed = await environments.update(principal, environment_id, body.applied_to)
        return environment_out(changed)
    except Archived as error:
        raise archived_error(error) from None


@post(
    "/{environment_id:str}/archive",
    summary="Archive an environment",
    status_code=200,
    opt={"statuses": (409,)},
)
async def archive_environment(
    environment_id: EnvId, environments: RedisEnvironments, principal: str
) -> EnvironmentBody:
    return environment_out(await environments.archive(principal, environment_id))


@delete("/{environment_id:str}", summary="Delete an environment", status_code=200)
async def delete_environment(
    environment_id: EnvId, environments: RedisEnvironments, principal: str
) -> EnvironmentDeleted:
    await environments.delete(principal, environment_id)
    return EnvironmentDeleted(id=environment_id)


def environments_router(mount: str, dependencies: Dependencies) -> Router:
    return Router(
        path=f"{mount}/environments",
        route_handlers=[
            create_environment,
            list_environments,
            get_environment,
            update_environment,
            archive_environment,
            delete_environment,
        ],
        dependencies=dependencies,
        tags=["qoder"],
    )
