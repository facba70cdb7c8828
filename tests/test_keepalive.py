"""Keepalive: comment pings while a stream is idle, and `retry:` on every stream."""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import httpx
import pytest

from streams.backends.synthetic import SyntheticParams, synthetic_reply
from tests.support.native import (
    Received,
    connect,
    continue_body,
    create_sid,
    expected_reply,
    sessions_url,
    words,
)
from tests.support.servers import ServerProcess, new_key_prefix, start_server
from tests.support.sse import SseEvent, stream_events


@pytest.fixture(scope="module")
def keepalive_server(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[ServerProcess]:
    """Pings every second of idleness and a non-default `retry:`."""
    server = start_server(
        tmp_path_factory.mktemp("keepalive"),
        redis_url=redis_url,
        key_prefix=new_key_prefix(),
        env={"PARLEY_KEEPALIVE_SECONDS": "1", "PARLEY_RETRY_MS": "1234"},
    )
    yield server
    server.terminate()


def is_ping(block: SseEvent) -> bool:
    return block.is_comment_only and block.comments == ("ping",)


def pings_of(received: Received) -> list[SseEvent]:
    return [b for b in received.blocks if is_ping(b)]


def pings_between(received: Received, first: str, then: str) -> list[SseEvent]:
    """The pings after the first block of kind `first` and before the first of kind `then`."""
    kinds = [b.event for b in received.blocks]
    start, end = kinds.index(first), kinds.index(then, kinds.index(first) + 1)
    return [b for b in received.blocks[start:end] if is_ping(b)]


async def test_an_idle_stream_between_two_deltas_receives_pings(
    keepalive_server: ServerProcess,
) -> None:
    server = keepalive_server
    text = "Say something, slowly."
    received = Received()
    async with server.client() as http:
        sid = await create_sid(http, refreshIntervalMs=5000)
        async with connect(
            http, "POST", sessions_url(sid, "/streamingContinue"), json_body=continue_body(text)
        ) as stream:
            await stream.read(received)

    pings = pings_between(received, "delta", "delta")
    assert len(pings) >= 3, [b.comments or b.event for b in received.blocks]
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(pings)]
    assert all(0.8 < gap < 2.5 for gap in gaps), gaps
    assert received.text == received.exchange()["response"]["text"]
    assert received.text == expected_reply("default", text)


async def test_a_joined_stream_waiting_for_the_next_delta_receives_pings(
    keepalive_server: ServerProcess,
) -> None:
    server = keepalive_server
    origin, joined = Received(), Received()
    async with server.client() as http:
        sid = await create_sid(http, refreshIntervalMs=5000)
        async with connect(
            http,
            "POST",
            sessions_url(sid, "/streamingContinue"),
            json_body=continue_body("hello"),
        ) as stream:
            await stream.read(origin, limit=1)
            async with connect(http, "GET", sessions_url(sid, "/stream")) as join:
                await join.read(joined, until=lambda b: len(pings_of(joined)) >= 2)

    assert [b.event for b in joined.blocks if b.event] == ["delta"]
    assert len(pings_of(joined)) == 2


async def test_a_long_first_token_wait_is_kept_alive_with_pings(
    keepalive_server: ServerProcess,
) -> None:
    server = keepalive_server
    params = {
        "mode": "lorem",
        "tokensPerSecond": 50,
        "replyTokens": 5,
        "firstTokenLatencyMs": 3500,
    }
    agent_id = f"slow-start-{uuid.uuid4().hex[:8]}"
    text = "Think hard first."
    received = Received()
    async with server.client() as http:
        created = await http.post(
            "/v1/agents",
            json={
                "agentId": agent_id,
                "name": "Slow first token",
                "model": {"provider": "synthetic", "name": "synthetic", "params": params},
            },
        )
        assert created.status_code == 201, created.text
        sid = await create_sid(http, agentId=agent_id)
        async with connect(
            http, "POST", sessions_url(sid, "/streamingContinue"), json_body=continue_body(text)
        ) as stream:
            await stream.read(received)

    assert len(pings_between(received, "started", "delta")) >= 3
    assert received.text == synthetic_reply(text, SyntheticParams.parse(params))


async def test_every_stream_starts_with_the_configured_retry(
    keepalive_server: ServerProcess,
) -> None:
    server = keepalive_server
    async with server.client() as http:
        sid = await create_sid(http, agentId="echo", refreshIntervalMs=50)
        origin = Received()
        async with connect(
            http,
            "POST",
            sessions_url(sid, "/streamingContinue"),
            json_body=continue_body(words(20)),
        ) as stream:
            await stream.read(origin, limit=1)
            joined = Received()
            async with connect(http, "GET", sessions_url(sid, "/stream")) as join:
                await join.read(joined, limit=1)
            await stream.read(origin)
        resumed = Received()
        first_id = origin.items[0].id
        async with connect(
            http, "GET", sessions_url(sid, "/stream"), last_event_id=first_id
        ) as stream:
            await stream.read(resumed)

    for received in (origin, joined, resumed):
        assert received.blocks[0].retry == 1234


async def test_streams_carry_the_default_retry(client: httpx.AsyncClient) -> None:
    sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)

    _, events = await stream_events(
        client, "POST", sessions_url(sid, "/streamingContinue"), json_body=continue_body("hi")
    )

    assert events[0].retry == 2000
    assert [e.retry for e in events[1:]] == [None] * (len(events) - 1)
