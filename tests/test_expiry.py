"""Sessions expire PARLEY_SESSION_TTL_SECONDS after their last exchange, every key with them."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from redis.asyncio import Redis

from tests.support.native import (
    assert_error,
    blocking_continue,
    continue_body,
    create_session,
    get_session,
    keys_under,
    own_server,
    stream_reply,
)
from tests.support.servers import ServerProcess

TTL_SECONDS = 60  # the smallest TTL the settings accept


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServerProcess]:
    env = {"PARLEY_SESSION_TTL_SECONDS": str(TTL_SECONDS)}
    with own_server(tmp_path_factory.mktemp("expiry-server"), redis_url, env) as started:
        yield started


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with server.client() as client:
        yield client


def _time(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _lifetime(session: dict[str, object]) -> timedelta:
    return _time(str(session["expiresAt"])) - _time(str(session["updatedAt"]))


async def _ttls_ms(redis: Redis, server: ServerProcess, sid: str) -> dict[str, int]:
    keys = await keys_under(redis, f"{server.key_prefix}:{{{sid}}}:*")
    return {key: await redis.pttl(key) for key in keys}


async def test_a_new_session_expires_one_ttl_after_it_was_created(
    http: httpx.AsyncClient, server: ServerProcess, redis_client: Redis
) -> None:
    session = await create_session(http)

    assert _time(session["expiresAt"]) - _time(session["createdAt"]) == timedelta(seconds=60)
    ttls = await _ttls_ms(redis_client, server, session["conversationId"])
    assert list(ttls.values()) and all(55_000 < ttl <= 60_000 for ttl in ttls.values())


async def test_expires_at_moves_forward_after_each_exchange(
    http: httpx.AsyncClient, server: ServerProcess, redis_client: Redis
) -> None:
    session = await create_session(http, agentId="echo")
    sid = session["conversationId"]
    stamps = [session["expiresAt"]]

    for turn in range(2):
        await asyncio.sleep(0.02)
        await blocking_continue(http, sid, f"blocking turn {turn}")
        stamps.append((await get_session(http, sid))["expiresAt"])
        await asyncio.sleep(0.02)
        await stream_reply(http, sid, f"streamed turn {turn}")
        stamps.append((await get_session(http, sid))["expiresAt"])

    times = [_time(stamp) for stamp in stamps]
    assert all(earlier < later for earlier, later in itertools.pairwise(times)), stamps
    assert _lifetime(await get_session(http, sid)) == timedelta(seconds=TTL_SECONDS)


async def test_every_key_of_a_session_expires_with_it(
    http: httpx.AsyncClient, server: ServerProcess, redis_client: Redis
) -> None:
    session = await create_session(http, agentId="echo")
    sid = session["conversationId"]
    await blocking_continue(http, sid, "one")
    await stream_reply(http, sid, "two")

    ttls = await _ttls_ms(redis_client, server, sid)

    assert len(ttls) >= 4  # session, exchange list, two exchanges (and their replay logs)
    immortal = [key for key, ttl in ttls.items() if ttl < 0]
    assert not immortal, f"keys without an expiry: {immortal}"
    assert all(ttl <= TTL_SECONDS * 1000 for ttl in ttls.values()), ttls


async def test_a_session_past_its_ttl_answers_404_and_leaves_the_list(
    http: httpx.AsyncClient, server: ServerProcess, redis_client: Redis
) -> None:
    """Rather than wait a minute, the test shortens the TTL of the session's keys in Redis
    (PEXPIRE 1 ms), which is exactly where a session that outlived its TTL ends up."""
    session = await create_session(http, agentId="echo", title="short-lived")
    sid = session["conversationId"]
    await blocking_continue(http, sid, "before it expires")
    for key in await keys_under(redis_client, f"{server.key_prefix}:{{{sid}}}:*"):
        await redis_client.pexpire(key, 1)
    await asyncio.sleep(0.05)

    fetched = await http.get(f"/v1/sessions/{sid}")
    history = await http.get(f"/v1/sessions/{sid}/exchanges")
    continued = await http.post(f"/v1/sessions/{sid}/blockingContinue", json=continue_body("hi"))
    listed = (await http.get("/v1/sessions", params={"q": "short-lived", "limit": 100})).json()

    for response in (fetched, history, continued):
        assert_error(response, 404, "not_found")
    assert sid not in {s["conversationId"] for s in listed["data"]}
    assert await keys_under(redis_client, f"{server.key_prefix}:*{sid}*") == set()
    # Listing pruned the expired session's entries from the owner's indexes.
    for index in await keys_under(redis_client, f"{server.key_prefix}:{{idx:*"):
        if await redis_client.type(index) == "zset":
            assert await redis_client.zscore(index, sid) is None
