"""The session resource: create, read, auto-create, patch, delete, batch delete, and the schema."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import httpx
from redis.asyncio import Redis

from tests.support.native import (
    assert_error,
    blocking_continue,
    create_session,
    get_session,
    keys_under,
    stream_reply,
    streaming,
    wait_for,
    words,
)
from tests.support.servers import ServerProcess

ZERO_USAGE = {
    "inputTokens": 0,
    "outputTokens": 0,
    "cacheReadInputTokens": 0,
    "cacheCreationInputTokens": 0,
    "totalTokens": 0,
}
DEFAULT_TTL = timedelta(days=7)


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


async def _index_members(redis: Redis, prefix: str) -> set[str]:
    members: set[str] = set()
    for index in await keys_under(redis, f"{prefix}:{{idx:*"):
        if await redis.type(index) == "zset":
            members |= {str(member) for member in await redis.zrange(index, 0, -1)}
    return members


async def test_a_new_session_gets_201_and_the_defaults(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/sessions", json={})

    assert response.status_code == 201
    session = response.json()
    assert re.fullmatch(r"[0-9a-f]{32}", session["conversationId"])
    assert session["agentId"] == "default"
    assert session["agentVersion"] == 1
    assert session["title"] is None
    assert session["metadata"] == {}
    assert session["refreshIntervalMs"] == 100
    assert session["status"] == "idle"
    assert session["messageCount"] == 0
    assert session["usage"] == ZERO_USAGE
    assert session["createdAt"] == session["updatedAt"]
    assert _time(session["expiresAt"]) - _time(session["createdAt"]) == DEFAULT_TTL
    assert response.headers["x-request-id"]


async def test_a_session_keeps_what_it_was_created_with(client: httpx.AsyncClient) -> None:
    fields = {
        "agentId": "echo",
        "agentVersion": 1,
        "title": "Trip plans",
        "metadata": {"team": "blue", "k" * 64: "v" * 512},
        "refreshIntervalMs": 250,
        "userId": "user-7",
    }
    created = await create_session(client, **fields)

    fetched = await get_session(client, created["conversationId"])

    assert fetched == created
    for name, value in fields.items():
        assert fetched[name] == value


async def test_the_interval_bounds_50_and_5000_are_accepted(client: httpx.AsyncClient) -> None:
    fastest = await create_session(client, refreshIntervalMs=50)
    slowest = await create_session(client, refreshIntervalMs=5000)

    assert (fastest["refreshIntervalMs"], slowest["refreshIntervalMs"]) == (50, 5000)


async def test_get_with_auto_create_creates_the_missing_session_under_its_id(
    client: httpx.AsyncClient,
) -> None:
    sid = "client-chosen-id-" + re.sub(r"\W", "", str(id(client)))
    missing = await client.get(f"/v1/sessions/{sid}")

    created = await client.get(f"/v1/sessions/{sid}", params={"autoCreate": "true"})
    again = await client.get(f"/v1/sessions/{sid}", params={"autoCreate": "true"})

    assert_error(missing, 404)
    assert created.status_code == 200
    assert created.json()["conversationId"] == sid
    assert created.json()["agentId"] == "default"
    assert again.json() == created.json()
    assert (await get_session(client, sid)) == created.json()


async def test_auto_create_refuses_an_id_it_could_not_use(client: httpx.AsyncClient) -> None:
    response = await client.get(f"/v1/sessions/{'x' * 65}", params={"autoCreate": "true"})

    error = assert_error(response, 400)
    assert "conversationId" in error["message"]


async def test_patch_changes_title_metadata_and_interval(client: httpx.AsyncClient) -> None:
    session = await create_session(client, title="old", metadata={"a": "1"}, refreshIntervalMs=100)
    sid = session["conversationId"]

    response = await client.patch(
        f"/v1/sessions/{sid}",
        json={"title": "new", "metadata": {"b": "2"}, "refreshIntervalMs": 400},
    )

    assert response.status_code == 200
    patched = response.json()
    assert (patched["title"], patched["metadata"], patched["refreshIntervalMs"]) == (
        "new",
        {"b": "2"},
        400,
    )
    assert _time(patched["updatedAt"]) >= _time(session["updatedAt"])
    assert patched["createdAt"] == session["createdAt"]
    assert await get_session(client, sid) == patched


async def test_patch_leaves_fields_it_does_not_name_alone(client: httpx.AsyncClient) -> None:
    session = await create_session(client, title="keep", metadata={"a": "1"}, refreshIntervalMs=300)
    sid = session["conversationId"]

    patched = (await client.patch(f"/v1/sessions/{sid}", json={"metadata": {}})).json()

    assert (patched["title"], patched["metadata"], patched["refreshIntervalMs"]) == (
        "keep",
        {},
        300,
    )


async def test_patch_with_a_null_title_clears_it(client: httpx.AsyncClient) -> None:
    session = await create_session(client, title="temporary")

    patched = await client.patch(f"/v1/sessions/{session['conversationId']}", json={"title": None})

    assert patched.json()["title"] is None


async def test_delete_removes_every_key_of_the_session_from_redis(
    client: httpx.AsyncClient, shared_server: ServerProcess, redis_client: Redis
) -> None:
    prefix = shared_server.key_prefix
    session = await create_session(client, agentId="echo")
    sid = session["conversationId"]
    await blocking_continue(client, sid, "first")
    await stream_reply(client, sid, "second")
    before = await keys_under(redis_client, f"{prefix}:{{{sid}}}*")

    response = await client.delete(f"/v1/sessions/{sid}")

    assert response.status_code == 204
    assert len(before) >= 4  # session, exchange list, two exchanges, replay logs
    assert await keys_under(redis_client, f"{prefix}:*{sid}*") == set()
    assert sid not in await _index_members(redis_client, prefix)
    assert_error(await client.get(f"/v1/sessions/{sid}"), 404)
    assert_error(await client.delete(f"/v1/sessions/{sid}"), 404)


async def test_deleting_a_running_session_ends_its_stream_and_leaves_no_key(
    client: httpx.AsyncClient, shared_server: ServerProcess, redis_client: Redis
) -> None:
    prefix = shared_server.key_prefix
    session = await create_session(client, agentId="echo")
    sid = session["conversationId"]

    async with streaming(client, sid, words(100)) as flight:
        await flight.next_event("delta")
        deleted = await client.delete(f"/v1/sessions/{sid}")
        assert deleted.status_code == 204
        # The stream ends at once, with the exchange cut short, instead of hanging open.
        rest = await flight.rest(timeout=5)

    assert rest[-1].event == "done"
    assert rest[-1].json()["status"] == "cancelled"

    async def no_keys_left() -> bool:
        return not await keys_under(redis_client, f"{prefix}:*{sid}*")

    await wait_for(no_keys_left, 5, "the session's keys to be deleted")
    assert sid not in await _index_members(redis_client, prefix)


async def test_batch_delete_reports_what_it_deleted_and_what_it_did_not_find(
    client: httpx.AsyncClient, shared_server: ServerProcess, redis_client: Redis
) -> None:
    one = (await create_session(client))["conversationId"]
    two = (await create_session(client))["conversationId"]
    kept = (await create_session(client))["conversationId"]
    unknown = "f" * 32

    response = await client.post(
        "/v1/sessions/batchDelete", json={"conversationIds": [one, unknown, two, one]}
    )

    assert response.status_code == 200
    assert response.json() == {"deleted": [one, two], "notFound": [unknown]}
    prefix = shared_server.key_prefix
    assert await keys_under(redis_client, f"{prefix}:{{{one}}}*") == set()
    assert await keys_under(redis_client, f"{prefix}:{{{two}}}*") == set()
    assert (await get_session(client, kept))["conversationId"] == kept


async def test_batch_delete_needs_at_least_one_id(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/sessions/batchDelete", json={"conversationIds": []})

    assert_error(response, 400)


async def test_the_openapi_schema_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/schema/openapi.json")
    page = await client.get("/schema")

    assert response.status_code == 200
    assert page.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    paths = schema["paths"]
    assert "/v1/sessions" in paths
    assert {"get", "post"} <= set(paths["/v1/sessions"])
    continue_paths = [p for p in paths if p.endswith("/streamingContinue")]
    assert continue_paths and "post" in paths[continue_paths[0]]
    assert any(p.endswith("/blockingContinue") for p in paths)
    assert any(p.endswith("/exchanges") for p in paths)


async def test_health_and_readiness_answer(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    ready = await client.get("/readyz")

    assert health.status_code == 200
    assert ready.status_code == 200
    assert health.headers["x-request-id"] and ready.headers["x-request-id"]
