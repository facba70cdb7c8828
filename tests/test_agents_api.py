"""The agent registry over HTTP: create, versions, immutability, paging, validation, pinning."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.agents import (
    TEAM_KEY,
    TEAM_KEY_ENV,
    agent_body,
    create_agent,
    new_agent_id,
    upstream_env,
)
from tests.support.native import assert_error, blocking_continue, create_sid
from tests.support.servers import ServerFactory
from tests.support.upstream import UpstreamServer


async def publish(client: httpx.AsyncClient, agent_id: str, **fields: Any) -> dict[str, Any]:
    response = await client.post(f"/v1/agents/{agent_id}/versions", json=fields)
    assert response.status_code == 201, response.text
    agent: dict[str, Any] = response.json()
    return agent


async def get_json(client: httpx.AsyncClient, url: str, **params: Any) -> Any:
    response = await client.get(url, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def system_prompt(upstream: UpstreamServer) -> str:
    messages = upstream.requests[-1].body["messages"]
    assert messages[0]["role"] == "system"
    return str(messages[0]["content"])


# --- create and read ------------------------------------------------------------------------


async def test_a_new_agent_is_version_1_with_every_field_given(http: httpx.AsyncClient) -> None:
    body = agent_body(
        "openai",
        description="Answers support questions.",
        contextBudgetTokens=4000,
        metadata={"team": "support"},
        model={"provider": "openai", "name": "gpt-4o-mini", "params": {"temperature": 0.2}},
    )

    created = await create_agent(http, **body)

    assert created["version"] == 1
    assert created["createdAt"].endswith("Z")
    for field in ("agentId", "name", "description", "instructions", "model", "metadata"):
        assert created[field] == body[field]
    assert created["contextBudgetTokens"] == 4000
    assert await get_json(http, f"/v1/agents/{body['agentId']}") == created


async def test_an_agent_id_that_exists_is_409(http: httpx.AsyncClient) -> None:
    body = agent_body("synthetic")
    await create_agent(http, **body)

    again = await http.post("/v1/agents", json=body | {"name": "someone else's"})

    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"
    assert (await get_json(http, f"/v1/agents/{body['agentId']}"))["name"] == body["name"]


async def test_unknown_agents_and_versions_are_404(http: httpx.AsyncClient) -> None:
    agent = await create_agent(http, **agent_body("synthetic"))
    agent_id = agent["agentId"]

    missing = [
        await http.get("/v1/agents/no-such-agent"),
        await http.get("/v1/agents/no-such-agent/versions"),
        await http.post("/v1/agents/no-such-agent/versions", json={"name": "x"}),
        await http.get(f"/v1/agents/{agent_id}/versions/2"),
    ]

    assert [r.status_code for r in missing] == [404, 404, 404, 404]
    assert "no version 2" in missing[-1].json()["error"]["message"]


async def test_the_builtin_agents_are_listed_and_still_answer(http: httpx.AsyncClient) -> None:
    listed = await get_json(http, "/v1/agents", limit=100)
    sid = await create_sid(http, agentId="echo")

    exchange = await blocking_continue(http, sid, "say this back")

    ids = [agent["agentId"] for agent in listed["data"]]
    assert {"default", "echo"} <= set(ids)
    assert exchange["response"]["text"] == "say this back"


# --- versions -------------------------------------------------------------------------------


async def test_a_new_version_carries_over_what_it_does_not_change(
    http: httpx.AsyncClient,
) -> None:
    first = await create_agent(http, **agent_body("openai", metadata={"tier": "gold"}))

    second = await publish(http, first["agentId"], instructions="Answer in French.")

    assert second["version"] == 2
    assert second["instructions"] == "Answer in French."
    unchanged = ("name", "model", "metadata", "contextBudgetTokens", "defaultRefreshIntervalMs")
    assert {f: second[f] for f in unchanged} == {f: first[f] for f in unchanged}
    assert await get_json(http, f"/v1/agents/{first['agentId']}") == second


async def test_published_versions_never_change(http: httpx.AsyncClient) -> None:
    first = await create_agent(http, **agent_body("synthetic"))
    agent_id = first["agentId"]

    await publish(http, agent_id, instructions="two", name="Renamed")
    await publish(http, agent_id, instructions="three")

    assert await get_json(http, f"/v1/agents/{agent_id}/versions/1") == first
    assert (await get_json(http, f"/v1/agents/{agent_id}/versions/2"))["name"] == "Renamed"
    assert (await get_json(http, f"/v1/agents/{agent_id}"))["version"] == 3


async def test_versions_are_listed_oldest_first_a_page_at_a_time(
    http: httpx.AsyncClient,
) -> None:
    agent = await create_agent(http, **agent_body("synthetic"))
    agent_id = agent["agentId"]
    for n in range(2, 6):
        await publish(http, agent_id, instructions=f"version {n}")

    pages: list[list[int]] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await get_json(http, f"/v1/agents/{agent_id}/versions", **params)
        pages.append([v["version"] for v in page["data"]])
        cursor = page["nextCursor"]
        if cursor is None:
            break

    assert pages == [[1, 2], [3, 4], [5]]


async def test_agents_are_listed_in_id_order_across_pages(http: httpx.AsyncClient) -> None:
    stem = new_agent_id("page")
    mine = [f"{stem}-{n}" for n in range(5)]
    for agent_id in reversed(mine):
        await create_agent(http, **agent_body("synthetic", agentId=agent_id))
    await publish(http, mine[2], instructions="latest wins")

    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await get_json(http, "/v1/agents", **params)
        assert len(page["data"]) <= 2
        seen += page["data"]
        cursor = page["nextCursor"]
        if cursor is None:
            break

    ids = [agent["agentId"] for agent in seen]
    assert ids == sorted(set(ids))
    assert [i for i in ids if i.startswith(stem)] == mine
    assert next(a for a in seen if a["agentId"] == mine[2])["version"] == 2


async def test_a_bad_cursor_is_400(http: httpx.AsyncClient) -> None:
    response = await http.get("/v1/agents", params={"cursor": "not-a-cursor"})

    assert response.status_code == 400


# --- validation -----------------------------------------------------------------------------

BAD_DEFINITIONS: dict[str, tuple[dict[str, Any], str]] = {
    "agent id pattern": ({"agentId": "has spaces!"}, "agentId"),
    "agent id too long": ({"agentId": "a" * 65}, "agentId"),
    "unknown provider": (
        {"model": {"provider": "gemini", "name": "g", "params": {}}},
        "model.provider",
    ),
    "openai params": (
        {"model": {"provider": "openai", "name": "m", "params": {"temprature": 0.5}}},
        "model.params",
    ),
    "anthropic params": (
        {"model": {"provider": "anthropic", "name": "m", "params": {"maxOutputTokens": 0}}},
        "model.params",
    ),
    "synthetic params": (
        {"model": {"provider": "synthetic", "name": "s", "params": {"mode": "shout"}}},
        "model.params.mode",
    ),
    "refresh interval": ({"defaultRefreshIntervalMs": 20}, "defaultRefreshIntervalMs"),
    "context budget": ({"contextBudgetTokens": 0}, "contextBudgetTokens"),
    "metadata size": ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    "key variable not ours": ({"upstream": {"apiKeyEnv": "AWS_SECRET_ACCESS_KEY"}}, "apiKeyEnv"),
    "key variable unset": (
        {"upstream": {"apiKeyEnv": "PARLEY_UPSTREAM_KEY_NOBODY_SET_THIS"}},
        "PARLEY_UPSTREAM_KEY_NOBODY_SET_THIS",
    ),
    "credentials in base url": (
        {"upstream": {"baseUrl": "https://user:pw@example.invalid/v1"}},
        "upstream.baseUrl",
    ),
    "unknown field": ({"temperature": 1.0}, "temperature"),
}


@pytest.mark.parametrize("case", sorted(BAD_DEFINITIONS))
async def test_a_bad_definition_is_400_naming_the_field(http: httpx.AsyncClient, case: str) -> None:
    change, field = BAD_DEFINITIONS[case]

    response = await http.post("/v1/agents", json=agent_body("openai") | change)

    assert response.status_code == 400, response.text
    assert field in response.text
    assert "pw@" not in response.text


async def test_a_bad_new_version_is_400_and_publishes_nothing(http: httpx.AsyncClient) -> None:
    agent = await create_agent(http, **agent_body("openai"))

    response = await http.post(
        f"/v1/agents/{agent['agentId']}/versions",
        json={"model": {"provider": "openai", "name": "m", "params": {"maxOutputTokens": -1}}},
    )

    assert response.status_code == 400
    assert (await get_json(http, f"/v1/agents/{agent['agentId']}"))["version"] == 1


# --- credentials ----------------------------------------------------------------------------


async def test_an_agent_shows_its_key_variable_name_never_the_key(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    created = await http.post(
        "/v1/agents", json=agent_body("openai", upstream={"apiKeyEnv": TEAM_KEY_ENV})
    )
    agent_id = created.json()["agentId"]
    reads = [
        await http.get(f"/v1/agents/{agent_id}"),
        await http.get(f"/v1/agents/{agent_id}/versions"),
        await http.get("/v1/agents", params={"limit": 100}),
    ]

    exchange = await blocking_continue(http, await create_sid(http, agentId=agent_id), "hi")

    assert created.json()["upstream"] == {"baseUrl": None, "apiKeyEnv": TEAM_KEY_ENV}
    assert all(TEAM_KEY not in r.text for r in [created, *reads])
    assert exchange["status"] == "completed"
    assert upstream.requests[-1].headers["authorization"] == f"Bearer {TEAM_KEY}"


async def test_the_server_key_never_goes_to_an_agent_s_own_base_url(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    own_url = upstream.openai_base_url.replace("127.0.0.1", "localhost")
    agent = await create_agent(http, **agent_body("openai", upstream={"baseUrl": own_url}))

    exchange = await blocking_continue(http, await create_sid(http, agentId=agent["agentId"]), "hi")

    assert exchange["status"] == "completed"
    assert upstream.requests[-1].headers["authorization"] == "Bearer no-key"


async def test_creating_agents_needs_an_admin_key_when_auth_is_on(
    server_factory: ServerFactory, upstream: UpstreamServer
) -> None:
    server = server_factory(upstream_env(upstream, PARLEY_API_KEYS="k-admin=ops:admin,k-user=u"))
    body = agent_body("synthetic")

    async with server.client() as client:
        anonymous = await client.post("/v1/agents", json=body)
        listed = await client.get("/v1/agents")
        as_user = await client.post(
            "/v1/agents", json=body, headers={"Authorization": "Bearer k-user"}
        )
        created = await client.post(
            "/v1/agents", json=body, headers={"Authorization": "Bearer k-admin"}
        )

    assert anonymous.status_code == 401
    assert listed.status_code == 401
    assert_error(as_user, 403, "forbidden")
    assert created.status_code == 201


async def test_only_an_admin_key_publishes_a_version_of_the_default_agent(
    server_factory: ServerFactory, upstream: UpstreamServer
) -> None:
    server = server_factory(upstream_env(upstream, PARLEY_API_KEYS="k-admin=ops:admin,k-user=u"))
    change = {"instructions": "Answer in French."}

    async with server.client() as client:
        as_user = await client.post(
            "/v1/agents/default/versions", json=change, headers={"Authorization": "Bearer k-user"}
        )
        unchanged = await client.get(
            "/v1/agents/default", headers={"Authorization": "Bearer k-user"}
        )
        as_admin = await client.post(
            "/v1/agents/default/versions", json=change, headers={"Authorization": "Bearer k-admin"}
        )

    assert_error(as_user, 403, "forbidden")
    assert unchanged.json()["version"] == 1
    assert as_admin.status_code == 201 and as_admin.json()["version"] == 2


# --- sessions pin a version -----------------------------------------------------------------


async def test_a_session_keeps_its_version_after_a_new_one_is_published(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    agent = await create_agent(http, **agent_body("openai", instructions="You are version one."))
    agent_id = agent["agentId"]
    pinned = await create_sid(http, agentId=agent_id)
    await publish(http, agent_id, instructions="You are version two.")

    await blocking_continue(http, pinned, "who are you?")
    old_prompt = system_prompt(upstream)
    latest = await create_sid(http, agentId=agent_id)
    await blocking_continue(http, latest, "who are you?")
    new_prompt = system_prompt(upstream)

    assert (await get_json(http, f"/v1/sessions/{pinned}"))["agentVersion"] == 1
    assert old_prompt == "You are version one."
    assert (await get_json(http, f"/v1/sessions/{latest}"))["agentVersion"] == 2
    assert new_prompt == "You are version two."


async def test_a_session_may_ask_for_an_older_version(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    agent = await create_agent(http, **agent_body("openai", instructions="Old rules."))
    await publish(http, agent["agentId"], instructions="New rules.")

    sid = await create_sid(http, agentId=agent["agentId"], agentVersion=1)
    await blocking_continue(http, sid, "hello")

    assert system_prompt(upstream) == "Old rules."


async def test_a_session_for_an_unknown_version_is_404(http: httpx.AsyncClient) -> None:
    agent = await create_agent(http, **agent_body("synthetic"))

    response = await http.post(
        "/v1/sessions", json={"agentId": agent["agentId"], "agentVersion": 7}
    )

    assert response.status_code == 404
    assert "no version 7" in response.json()["error"]["message"]


async def test_a_session_takes_the_agent_s_refresh_interval(http: httpx.AsyncClient) -> None:
    agent = await create_agent(http, **agent_body("synthetic", defaultRefreshIntervalMs=750))

    response = await http.post("/v1/sessions", json={"agentId": agent["agentId"]})

    assert response.json()["refreshIntervalMs"] == 750
