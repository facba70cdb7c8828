"""Qoder's environments and agents, driven by the official ``anthropic`` SDK against a real
uvicorn process (``client.beta.environments`` / ``client.beta.agents``), and by raw httpx on
Qoder's own mount where its list envelope matters: the client is the client, unchanged."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Any

import anthropic
import httpx
import pytest

from tests.support.native import blocking_continue, create_sid
from tests.support.servers import ServerFactory, ServerProcess

QODER = "/api/v1/cloud"
KEYS = {"PARLEY_API_KEYS": "k-admin=ops:admin,k-alice=alice,k-bob=bob"}


def sdk(server: ServerProcess, key: str = "unused") -> anthropic.Anthropic:
    """What a user writes: the base URL and a key; no retries, so errors show as they are."""
    return anthropic.Anthropic(base_url=f"{server.base_url}/anthropic", api_key=key, max_retries=0)


def unique(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def client(shared_server: ServerProcess) -> anthropic.Anthropic:
    return sdk(shared_server)


@pytest.fixture
async def http(shared_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with shared_server.client() as http:
        yield http


def echo_agent(client: anthropic.Anthropic, **fields: Any) -> Any:
    return client.beta.agents.create(model="synthetic-echo", name=unique("echo"), **fields)


# --- environments ------------------------------------------------------------------------


def test_an_environment_is_created_with_anthropics_default_config_and_read_back(
    client: anthropic.Anthropic,
) -> None:
    created = client.beta.environments.create(
        name="builds", description="CI", metadata={"team": "infra"}
    )

    read = client.beta.environments.retrieve(created.id)

    assert created.id.startswith("env_") and len(created.id) == len("env_") + 24
    assert created.type == "environment"
    assert (created.name, created.description, created.metadata) == (
        "builds",
        "CI",
        {"team": "infra"},
    )
    assert created.config.type == "cloud"
    assert created.config.model_dump()["networking"] == {"type": "unrestricted"}
    assert created.archived_at is None
    assert created.created_at == created.updated_at and created.created_at.endswith("Z")
    assert read.model_dump() == created.model_dump()


def test_environments_are_listed_in_creation_order_three_pages_of_two(
    server_factory: ServerFactory,
) -> None:
    client = sdk(server_factory())
    made = [client.beta.environments.create(name=f"e{i}").id for i in range(5)]

    pages = list(client.beta.environments.list(limit=2).iter_pages())
    every = [environment.id for environment in client.beta.environments.list(limit=2)]

    assert [[e.id for e in page.data] for page in pages] == [made[0:2], made[2:4], made[4:]]
    assert every == made


def test_an_update_changes_the_fields_given_and_patches_metadata(
    client: anthropic.Anthropic,
) -> None:
    created = client.beta.environments.create(
        name="old", description="kept", metadata={"a": "1", "b": "2"}
    )

    updated = client.beta.environments.update(
        created.id,
        name="new",
        metadata={"a": None, "c": "3"},
        config={"type": "cloud", "packages": {"pip": ["httpx"]}},
    )

    assert (updated.name, updated.description) == ("new", "kept")
    assert updated.metadata == {"b": "2", "c": "3"}
    assert updated.config.model_dump()["packages"]["pip"] == ["httpx"]
    assert updated.config.model_dump()["networking"] == {"type": "unrestricted"}
    assert updated.updated_at > created.updated_at
    assert client.beta.environments.retrieve(created.id).model_dump() == updated.model_dump()


def test_an_archived_environment_is_listed_only_when_asked(
    server_factory: ServerFactory,
) -> None:
    client = sdk(server_factory())
    kept = client.beta.environments.create(name="kept")
    archived = client.beta.environments.archive(client.beta.environments.create(name="old").id)

    listed = [e.id for e in client.beta.environments.list()]
    everything = [e.id for e in client.beta.environments.list(include_archived=True)]

    assert archived.archived_at is not None
    assert listed == [kept.id]
    assert everything == [kept.id, archived.id]


def test_updating_an_archived_environment_is_refused_with_its_error_code(
    client: anthropic.Anthropic,
) -> None:
    archived = client.beta.environments.archive(client.beta.environments.create(name="x").id)

    with pytest.raises(anthropic.BadRequestError) as refused:
        client.beta.environments.update(archived.id, name="y")

    assert refused.value.error_code == "environment_archived"
    assert client.beta.environments.retrieve(archived.id).name == "x"


def test_a_deleted_environment_is_not_found(client: anthropic.Anthropic) -> None:
    created = client.beta.environments.create(name="doomed")

    deleted = client.beta.environments.delete(created.id)

    assert (deleted.id, deleted.type) == (created.id, "environment_deleted")
    with pytest.raises(anthropic.NotFoundError):
        client.beta.environments.retrieve(created.id)


def test_an_unknown_field_is_a_bad_request_naming_it(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.beta.environments.create(name="x", extra_body={"colour": "red"})

    body = refused.value.body
    assert isinstance(body, dict)
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["param"] == "colour"
    assert refused.value.request_id is not None
    assert body["request_id"] == refused.value.request_id


async def test_the_qoder_mount_answers_the_same_environments_with_first_and_last_ids(
    server_factory: ServerFactory,
) -> None:
    server = server_factory()
    client = sdk(server)
    made = [client.beta.environments.create(name=f"q{i}") for i in range(3)]

    async with server.client() as http:
        one = (await http.get(f"{QODER}/environments/{made[0].id}")).json()
        first = (await http.get(f"{QODER}/environments", params={"limit": 2})).json()
        after = await http.get(
            f"{QODER}/environments", params={"limit": 2, "after_id": first["last_id"]}
        )
        before = await http.get(
            f"{QODER}/environments", params={"limit": 2, "before_id": made[2].id}
        )

    assert one == made[0].model_dump()
    assert first["first_id"] == made[0].id and first["last_id"] == made[1].id
    assert first["has_more"] is True and first["next_page"]
    assert [e["id"] for e in after.json()["data"]] == [made[2].id]
    assert after.json()["has_more"] is False and after.json()["next_page"] is None
    assert [e["id"] for e in before.json()["data"]] == [made[0].id, made[1].id]
    assert before.json()["has_more"] is False


def test_another_principals_environment_is_not_found_to_read_update_archive_or_delete(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(KEYS)
    alice, bob = sdk(server, "k-alice"), sdk(server, "k-bob")
    mine = alice.beta.environments.create(name="alice's", metadata={"a": "1"})

    attempts = [
        lambda: bob.beta.environments.retrieve(mine.id),
        lambda: bob.beta.environments.update(mine.id, name="bob's"),
        lambda: bob.beta.environments.archive(mine.id),
        lambda: bob.beta.environments.delete(mine.id),
    ]
    for attempt in attempts:
        with pytest.raises(anthropic.NotFoundError) as missing:
            attempt()
        assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]

    assert alice.beta.environments.retrieve(mine.id).model_dump() == mine.model_dump()


def test_another_principals_environments_are_not_listed(server_factory: ServerFactory) -> None:
    server = server_factory(KEYS)
    alice, bob = sdk(server, "k-alice"), sdk(server, "k-bob")
    alice.beta.environments.create(name="alice's")

    listed = list(bob.beta.environments.list(include_archived=True))

    assert listed == []


def test_a_principal_pages_over_only_their_own_environments(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(KEYS)
    alice, bob = sdk(server, "k-alice"), sdk(server, "k-bob")
    hers = []
    for i in range(3):
        hers.append(alice.beta.environments.create(name=f"alice-{i}").id)
        bob.beta.environments.create(name=f"bob-{i}")

    pages = list(alice.beta.environments.list(limit=2).iter_pages())

    assert [[e.id for e in page.data] for page in pages] == [hers[0:2], hers[2:]]


# --- agents ------------------------------------------------------------------------------


def test_an_agent_is_created_and_read_back_in_the_sdks_shape(client: anthropic.Anthropic) -> None:
    tools = [
        {"type": "agent_toolset_20260401"},
        {"type": "mcp_toolset", "mcp_server_name": "docs"},
    ]
    servers = [{"name": "docs", "type": "url", "url": "https://mcp.example.com/sse"}]
    created = echo_agent(
        client, system="Be brief.", metadata={"team": "a"}, tools=tools, mcp_servers=servers
    )

    read = client.beta.agents.retrieve(created.id)

    assert created.id.startswith("agent_") and created.type == "agent"
    assert (created.model.id, created.system, created.version) == ("synthetic-echo", "Be brief.", 1)
    assert [t.model_dump(exclude_none=True) for t in created.tools] == tools
    assert [s.model_dump() for s in created.mcp_servers] == servers
    assert (created.skills, created.metadata, created.archived_at) == ([], {"team": "a"}, None)
    assert created.execution_identity.type == "service_account"
    assert read.model_dump() == created.model_dump()


def test_a_model_given_as_an_object_is_read_as_its_id(client: anthropic.Anthropic) -> None:
    created = client.beta.agents.create(
        model={"id": "synthetic-lorem", "speed": "standard"}, name="lorem"
    )

    assert created.model.id == "synthetic-lorem"


def test_an_update_publishes_version_2_and_version_1_stays_readable(
    client: anthropic.Anthropic,
) -> None:
    created = echo_agent(client, system="first")

    updated = client.beta.agents.update(created.id, version=1, system="second")

    assert (updated.version, updated.system, updated.name) == (2, "second", created.name)
    assert updated.created_at == created.created_at and updated.updated_at > created.updated_at
    assert client.beta.agents.retrieve(created.id, version=1).system == "first"
    assert client.beta.agents.retrieve(created.id).version == 2


def test_an_update_of_a_version_no_longer_latest_is_a_conflict(
    client: anthropic.Anthropic,
) -> None:
    created = echo_agent(client)
    client.beta.agents.update(created.id, version=1, description="v2")

    with pytest.raises(anthropic.ConflictError):
        client.beta.agents.update(created.id, version=1, description="also v2")

    assert client.beta.agents.retrieve(created.id).description == "v2"


def test_the_versions_of_an_agent_are_listed_oldest_first(client: anthropic.Anthropic) -> None:
    created = echo_agent(client, system="v1")
    client.beta.agents.update(created.id, system="v2")
    client.beta.agents.update(created.id, system="v3")

    versions = list(client.beta.agents.versions.list(created.id, limit=2))

    assert [(v.version, v.system) for v in versions] == [(1, "v1"), (2, "v2"), (3, "v3")]


def test_an_archived_agent_is_listed_only_when_asked(client: anthropic.Anthropic) -> None:
    kept = echo_agent(client)
    archived = client.beta.agents.archive(echo_agent(client).id)

    listed = {agent.id for agent in client.beta.agents.list(limit=100)}
    everything = {agent.id for agent in client.beta.agents.list(limit=100, include_archived=True)}

    assert archived.archived_at is not None
    assert kept.id in listed and archived.id not in listed
    assert {kept.id, archived.id} <= everything


def test_agents_are_filtered_by_creation_time(client: anthropic.Anthropic) -> None:
    created = echo_agent(client)

    since = {agent.id for agent in client.beta.agents.list(created_at_gte=created.created_at)}

    assert created.id in since
    assert "echo" not in since


def test_a_builtin_agent_of_the_native_api_is_visible_through_the_sdk(
    client: anthropic.Anthropic,
) -> None:
    echo = client.beta.agents.retrieve("echo")

    assert (echo.id, echo.name, echo.model.id) == ("echo", "Echo (synthetic)", "synthetic-echo")
    assert echo.tools == [] and echo.mcp_servers == []


async def test_an_agent_created_through_the_sdk_answers_on_the_native_api(
    client: anthropic.Anthropic, http: httpx.AsyncClient
) -> None:
    created = echo_agent(client, system="Repeat.")

    native = (await http.get(f"/v1/agents/{created.id}")).json()
    exchange = await blocking_continue(http, await create_sid(http, agentId=created.id), "hi there")

    assert native["instructions"] == "Repeat."
    assert native["model"]["provider"] == "synthetic"
    assert exchange["response"]["text"] == "hi there"


def test_an_unknown_model_is_a_bad_request_naming_model(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.beta.agents.create(model="no-such-model", name="x")

    assert refused.value.body["error"]["param"] == "model"  # type: ignore[index]


def test_a_claude_model_without_an_anthropic_key_is_not_found_naming_model(
    client: anthropic.Anthropic,
) -> None:
    """As Anthropic's API answers a model it does not have: the name is well formed, the
    model is not here."""
    with pytest.raises(anthropic.NotFoundError) as refused:
        client.beta.agents.create(model="claude-sonnet-4-5", name="x")

    assert refused.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]
    assert refused.value.body["error"]["param"] == "model"  # type: ignore[index]
    message = refused.value.body["error"]["message"]  # type: ignore[index]
    assert "'claude-sonnet-4-5' cannot be served: no Anthropic API key" in message


async def test_a_claude_model_is_served_by_anthropic_when_the_server_has_a_key(
    server_factory: ServerFactory,
) -> None:
    server = server_factory({"PARLEY_ANTHROPIC_API_KEY": "sk-ant-test"})

    created = sdk(server).beta.agents.create(model="claude-sonnet-4-5", name="claude")
    async with server.client() as http:
        native = (await http.get(f"/v1/agents/{created.id}")).json()

    assert created.model.id == "claude-sonnet-4-5"
    assert native["model"] == {"provider": "anthropic", "name": "claude-sonnet-4-5", "params": {}}


def test_skills_are_refused_naming_skills(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as refused:
        echo_agent(client, skills=[{"type": "anthropic", "skill_id": "xlsx"}])

    assert refused.value.body["error"]["param"] == "skills"  # type: ignore[index]


def test_a_user_key_creating_an_agent_is_refused_and_nothing_is_created(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(KEYS)
    alice = sdk(server, "k-alice")
    name = unique("alice")

    with pytest.raises(anthropic.PermissionDeniedError) as refused:
        alice.beta.agents.create(model="synthetic-echo", name=name)

    error = refused.value.body["error"]  # type: ignore[index]
    assert error["type"] == "permission_error" and "admin key" in error["message"]
    everything = alice.beta.agents.list(limit=100, include_archived=True)
    assert name not in {agent.name for agent in everything}


def test_a_user_key_can_neither_update_nor_archive_an_agent(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(KEYS)
    created = echo_agent(sdk(server, "k-admin"), system="kept")
    alice = sdk(server, "k-alice")

    with pytest.raises(anthropic.PermissionDeniedError):
        alice.beta.agents.update(created.id, version=1, system="changed")
    with pytest.raises(anthropic.PermissionDeniedError):
        alice.beta.agents.archive(created.id)

    read = alice.beta.agents.retrieve(created.id)
    assert (read.version, read.system, read.archived_at) == (1, "kept", None)


def test_an_admin_key_creates_updates_and_archives_an_agent(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(KEYS)
    admin = sdk(server, "k-admin")

    created = echo_agent(admin, system="first")
    updated = admin.beta.agents.update(created.id, version=1, system="second")
    archived = admin.beta.agents.archive(created.id)

    assert (updated.version, updated.system) == (2, "second")
    assert archived.archived_at is not None
    assert sdk(server, "k-bob").beta.agents.retrieve(created.id).archived_at is not None


@pytest.mark.parametrize("resource", ["environments", "agents"])
def test_unknown_ids_are_not_found(client: anthropic.Anthropic, resource: str) -> None:
    registry = getattr(client.beta, resource)

    with pytest.raises(anthropic.NotFoundError) as missing:
        registry.retrieve(f"{resource[:3]}_nope")

    assert missing.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_a_wrong_key_is_an_authentication_error(server_factory: ServerFactory) -> None:
    server = server_factory({"PARLEY_API_KEYS": "k-alice=alice"})

    with pytest.raises(anthropic.AuthenticationError):
        sdk(server, "k-wrong").beta.agents.list()
    assert sdk(server, "k-alice").beta.environments.create(name="ok").name == "ok"


# --- lists: empty values, cursors and filters, as the OpenAPI document states them -------


async def test_empty_cursor_values_list_environments_as_if_none_were_given(
    client: anthropic.Anthropic, http: httpx.AsyncClient
) -> None:
    client.beta.environments.create(name=unique("empty"))
    url = f"{QODER}/environments"

    plain = await http.get(url, params={"limit": 100})
    empty = await http.get(url, params={"limit": 100, "page": "", "after_id": "", "before_id": ""})

    assert empty.status_code == 200, empty.text
    assert empty.json() == plain.json()


async def test_empty_creation_time_filters_list_agents_as_if_none_were_given(
    client: anthropic.Anthropic, http: httpx.AsyncClient
) -> None:
    echo_agent(client)
    url = f"{QODER}/agents"

    plain = await http.get(url, params={"limit": 100})
    empty = await http.get(url, params={"limit": 100, "created_at[gte]": "", "created_at[lte]": ""})

    assert empty.status_code == 200, empty.text
    assert empty.json() == plain.json()


async def test_a_page_of_another_shape_is_refused_naming_page_and_its_value(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get(f"{QODER}/environments", params={"page": "NaN"})

    error = response.json()["error"]
    assert (response.status_code, error["param"]) == (400, "page")
    assert "'NaN'" in error["message"] and "after.<id> or before.<id>" in error["message"]


async def test_a_page_naming_no_environment_goes_on_from_where_that_id_would_be(
    client: anthropic.Anthropic, http: httpx.AsyncClient
) -> None:
    made = [client.beta.environments.create(name=unique("gap")).id for _ in range(2)]
    between = made[0] + "0"  # after made[0] in id order, before made[1]

    response = await http.get(f"{QODER}/environments", params={"page": f"after.{between}"})

    assert response.status_code == 200, response.text
    assert [e["id"] for e in response.json()["data"]][:1] == [made[1]]


async def test_a_next_page_of_environments_is_after_the_last_id_listed(
    client: anthropic.Anthropic, http: httpx.AsyncClient
) -> None:
    for _ in range(2):
        client.beta.environments.create(name=unique("next"))

    first = (await http.get(f"{QODER}/environments", params={"limit": 1})).json()

    assert first["next_page"] == f"after.{first['last_id']}"


def test_agents_are_filtered_by_a_date_read_as_its_midnight_utc(
    client: anthropic.Anthropic,
) -> None:
    created = echo_agent(client)
    day = created.created_at.astimezone(UTC).date().isoformat()

    since = {agent.id for agent in client.beta.agents.list(created_at_gte=day, limit=100)}
    until = {agent.id for agent in client.beta.agents.list(created_at_lte=day, limit=100)}

    assert created.id in since and created.id not in until


async def test_an_impossible_date_is_refused_naming_the_filter_and_the_value(
    http: httpx.AsyncClient,
) -> None:
    response = await http.get(f"{QODER}/agents", params={"created_at[gte]": "2026-02-30"})

    error = response.json()["error"]
    assert (response.status_code, error["param"]) == (400, "created_at[gte]")
    assert "'2026-02-30'" in error["message"] and "RFC 3339" in error["message"]


async def test_an_agents_versions_page_is_the_number_of_the_next_version(
    client: anthropic.Anthropic, http: httpx.AsyncClient
) -> None:
    created = echo_agent(client, system="v1")
    client.beta.agents.update(created.id, system="v2")
    url = f"{QODER}/agents/{created.id}/versions"

    first = (await http.get(url, params={"limit": 1})).json()
    second = (await http.get(url, params={"limit": 1, "page": first["next_page"]})).json()

    assert first["next_page"] == "2"
    assert [v["version"] for v in second["data"]] == [2] and second["next_page"] is None


async def test_an_agents_versions_page_that_is_no_number_is_refused_naming_its_value(
    client: anthropic.Anthropic, http: httpx.AsyncClient
) -> None:
    created = echo_agent(client)

    response = await http.get(f"{QODER}/agents/{created.id}/versions", params={"page": "NaN"})

    error = response.json()["error"]
    assert (response.status_code, error["param"]) == (400, "page")
    assert "'NaN'" in error["message"]


# --- bodies, as the OpenAPI document states them -----------------------------------------


async def test_the_document_requires_the_bodies_of_creates_and_not_of_updates(
    http: httpx.AsyncClient,
) -> None:
    paths = (await http.get("/schema/openapi.json")).json()["paths"]

    required = {
        path: paths[f"{QODER}{path}"]["post"]["requestBody"]["required"]
        for path in (
            "/agents",
            "/agents/{agent_id}",
            "/environments",
            "/environments/{environment_id}",
        )
    }

    assert required == {
        "/agents": True,
        "/agents/{agent_id}": False,
        "/environments": True,
        "/environments/{environment_id}": False,
    }


async def test_creating_an_agent_without_a_body_is_refused_naming_model(
    http: httpx.AsyncClient,
) -> None:
    response = await http.post(f"{QODER}/agents")

    assert (response.status_code, response.json()["error"]["param"]) == (400, "model")
