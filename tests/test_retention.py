"""Retention: a finished exchange's replay log expires; the stored exchange stays."""

from __future__ import annotations

import httpx
from redis.asyncio import Redis

from tests.support.native import (
    Received,
    connect,
    continue_body,
    create_sid,
    expected_reply,
    list_exchanges,
    sessions_url,
    wait_for,
    words,
)
from tests.support.servers import ServerFactory, ServerProcess


def log_key(prefix: str, sid: str, xid: str) -> str:
    return f"{prefix}:{{{sid}}}:x:{xid}:log"


def exchange_key(prefix: str, sid: str, xid: str) -> str:
    return f"{prefix}:{{{sid}}}:x:{xid}"


async def test_the_replay_log_expires_after_retention_and_the_exchange_stays(
    server_factory: ServerFactory, redis_client: Redis
) -> None:
    server = server_factory({"PARLEY_REPLAY_RETENTION_SECONDS": "2"})
    text = words(40)
    received = Received()
    async with server.client() as http:
        sid = await create_sid(http, agentId="echo", refreshIntervalMs=50)
        async with connect(
            http,
            "POST",
            sessions_url(sid, "/streamingContinue"),
            json_body=continue_body(text, messageId="kept"),
        ) as stream:
            await stream.read(received, limit=1)
            ttl_while_running = await redis_client.ttl(log_key(server.key_prefix, sid, "kept"))
            await stream.read(received)
        ttl_when_done = await redis_client.ttl(log_key(server.key_prefix, sid, "kept"))
        first_id = received.items[0].id
        replay = Received()
        async with connect(
            http, "GET", sessions_url(sid, "/stream"), last_event_id=first_id
        ) as stream:
            await stream.read(replay)

        async def log_gone() -> bool:
            return not await redis_client.exists(log_key(server.key_prefix, sid, "kept"))

        await wait_for(log_gone, 5, "the replay log to expire")
        after_expiry = await http.get(
            sessions_url(sid, "/stream"), headers={"Last-Event-ID": first_id or ""}
        )
        stored = await list_exchanges(http, sid)
        session = await http.get(sessions_url(sid))

    assert ttl_while_running > 2
    assert 0 < ttl_when_done <= 2
    assert replay.items[-1].event == "done"
    assert after_expiry.status_code == 204
    assert stored[-1]["response"]["text"] == expected_reply("echo", text)
    assert stored[-1]["status"] == "completed"
    assert session.status_code == 200
    assert await redis_client.ttl(exchange_key(server.key_prefix, sid, "kept")) > 3600


async def test_the_default_retention_keeps_the_replay_log_for_ten_minutes(
    client: httpx.AsyncClient, redis_client: Redis, shared_server: ServerProcess
) -> None:
    sid = await create_sid(client, agentId="echo")
    reply = await client.post(
        sessions_url(sid, "/blockingContinue"), json=continue_body("x", messageId="ten")
    )
    assert reply.status_code == 200

    ttl = await redis_client.ttl(log_key(shared_server.key_prefix, sid, "ten"))

    assert 590 <= ttl <= 600
