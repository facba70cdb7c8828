"""Many processes: a stream started on one can be joined, resumed and cancelled from another.

Two separate uvicorn processes on their own ports share one Redis and one key prefix; and one
uvicorn with `--workers 2`, where each connection lands on whichever worker accepts it.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.support.native import (
    Received,
    assert_cancelled_with_partial_text,
    assert_ordered_once,
    connect,
    continue_body,
    create_sid,
    expected_reply,
    list_exchanges,
    sessions_url,
    wait_for,
    words,
)
from tests.support.servers import ServerProcess, new_key_prefix, start_server


@pytest.fixture(scope="module")
def pair(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two separate uvicorn processes on their own ports, one Redis, one key prefix."""
    log_dir, prefix = tmp_path_factory.mktemp("pair"), new_key_prefix()
    a = start_server(log_dir, redis_url=redis_url, key_prefix=prefix)
    b = start_server(log_dir, redis_url=redis_url, key_prefix=prefix)
    yield a, b
    b.terminate()
    a.terminate()


@pytest.fixture(scope="module")
def two_workers(
    tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[ServerProcess]:
    """One uvicorn with `--workers 2`: each connection lands on whichever worker accepts it."""
    server = start_server(
        tmp_path_factory.mktemp("workers"),
        redis_url=redis_url,
        key_prefix=new_key_prefix(),
        workers=2,
    )
    yield server
    server.terminate()


async def test_start_on_a_join_and_cancel_on_b(pair: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = pair
    text = "Tell me a long story."
    async with a.client() as on_a, b.client() as on_b:
        sid = await create_sid(on_a)
        origin, joined = Received(), Received()
        async with connect(
            on_a, "POST", sessions_url(sid, "/streamingContinue"), json_body=continue_body(text)
        ) as stream:
            await stream.read(origin, limit=2)
            async with connect(on_b, "GET", sessions_url(sid, "/stream")) as join:
                reader = asyncio.create_task(join.read(joined))
                await stream.read(origin, limit=1)
                cancel = await on_b.post(sessions_url(sid, "/cancel"), json={})
                await stream.read(origin)
                await asyncio.wait_for(reader, 10)
        stored = (await list_exchanges(on_b, sid))[-1]

    assert cancel.status_code == 200, cancel.text
    done = origin.exchange()
    assert_cancelled_with_partial_text(done, origin, expected_reply("default", text))
    assert joined.exchange() == done == stored == cancel.json()
    assert [(e.id, e.data) for e in joined.items] == [(e.id, e.data) for e in origin.items]


async def test_cancel_by_message_id_reaches_the_runner_on_the_other_process(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = pair
    async with a.client() as on_a, b.client() as on_b:
        sid = await create_sid(on_a, agentId="echo", refreshIntervalMs=50)
        received = Received()
        async with connect(
            on_a,
            "POST",
            sessions_url(sid, "/streamingContinue"),
            json_body=continue_body(words(200), messageId="m-1"),
        ) as stream:
            await stream.read(received, limit=1)
            wrong = await on_b.post(sessions_url(sid, "/cancel"), json={"messageId": "m-2"})
            right = await on_b.post(sessions_url(sid, "/cancel"), json={"messageId": "m-1"})
            again = await on_b.post(sessions_url(sid, "/cancel"), json={"messageId": "m-1"})
            await stream.read(received)

    assert (wrong.status_code, wrong.json()["error"]["code"]) == (409, "not_running")
    assert right.status_code == 200
    assert right.json() == received.exchange()
    assert received.exchange()["status"] == "cancelled"
    assert (again.status_code, again.json()["error"]["code"]) == (409, "not_running")


async def test_resume_alternating_between_two_processes_is_exact(
    pair: tuple[ServerProcess, ServerProcess],
) -> None:
    servers = pair
    rng = random.Random(7)
    text = words(150)
    async with servers[0].client() as on_a, servers[1].client() as on_b:
        clients = [on_a, on_b]
        sid = await create_sid(on_a, agentId="echo", refreshIntervalMs=50)
        received = Received()
        async with connect(
            on_a, "POST", sessions_url(sid, "/streamingContinue"), json_body=continue_body(text)
        ) as stream:
            finished = await stream.read(received, limit=2)
        hops = 0
        while not finished:
            hops += 1
            async with connect(
                clients[hops % 2],
                "GET",
                sessions_url(sid, "/stream"),
                last_event_id=received.last_event_id,
            ) as stream:
                assert stream.status_code == 200
                finished = await stream.read(received, limit=rng.randint(1, 4))

    assert hops >= 10
    assert_ordered_once(received.items)
    assert received.text == received.exchange()["response"]["text"] == expected_reply("echo", text)


async def test_two_workers_behind_one_port_serve_exact_streams_joins_and_resumes(
    two_workers: ServerProcess, redis_client: Redis
) -> None:
    server = two_workers
    await _both_workers_listening(redis_client, server)
    results = await asyncio.gather(*(_stream_join_and_resume(server, n) for n in range(6)))

    for text, origin, joined, resumed in results:
        expected = expected_reply("echo", text)
        assert origin.text == joined.text == resumed.text == expected
        assert origin.exchange() == joined.exchange() == resumed.exchange()
        assert [(e.id, e.data) for e in joined.items] == [(e.id, e.data) for e in origin.items]
        assert [e.id for e in resumed.items] == [e.id for e in origin.items]


async def test_two_workers_behind_one_port_cancel_whichever_worker_runs_it(
    two_workers: ServerProcess, redis_client: Redis
) -> None:
    server = two_workers
    await _both_workers_listening(redis_client, server)
    outcomes = await asyncio.gather(*(_stream_and_cancel(server, n) for n in range(4)))

    for status, received, text in outcomes:
        assert status == 200
        assert_cancelled_with_partial_text(
            received.exchange(), received, expected_reply("echo", text)
        )


async def _both_workers_listening(redis: Redis, server: ServerProcess) -> None:
    """Both workers' hubs hold their control subscription (the first may answer /healthz alone)."""

    async def subscribed() -> bool:
        [(_, found)] = await redis.pubsub_numsub(f"{server.key_prefix}:control")
        return int(found) >= 2

    await wait_for(subscribed, 15, "both workers' hubs")


async def _stream_join_and_resume(
    server: ServerProcess, n: int
) -> tuple[str, Received, Received, Received]:
    """One exchange read three ways, each on its own connection (so on either worker)."""
    text = words(60, start=n * 100)
    origin, joined, resumed = Received(), Received(), Received()
    async with server.client() as setup:
        sid = await create_sid(setup, agentId="echo", refreshIntervalMs=50)
    async with (
        server.client() as http,
        connect(
            http, "POST", sessions_url(sid, "/streamingContinue"), json_body=continue_body(text)
        ) as stream,
    ):
        await stream.read(origin, limit=3)
        joiner = asyncio.create_task(_read_all(server, sid, None, joined))
        resumer = asyncio.create_task(_read_in_hops(server, sid, resumed, n))
        await stream.read(origin)
        await asyncio.wait_for(asyncio.gather(joiner, resumer), 20)
    return text, origin, joined, resumed


async def _read_all(server: ServerProcess, sid: str, after: str | None, into: Received) -> None:
    async with (
        server.client() as http,
        connect(http, "GET", sessions_url(sid, "/stream"), last_event_id=after) as stream,
    ):
        assert stream.status_code == 200
        await stream.read(into)


async def _read_in_hops(server: ServerProcess, sid: str, into: Received, seed: int) -> None:
    """Resume on a fresh connection after every few events until the end."""
    rng = random.Random(seed)
    finished = False
    while not finished:
        async with (
            server.client() as http,
            connect(
                http, "GET", sessions_url(sid, "/stream"), last_event_id=into.last_event_id
            ) as stream,
        ):
            assert stream.status_code == 200
            finished = await stream.read(into, limit=rng.randint(1, 3))


async def _stream_and_cancel(server: ServerProcess, n: int) -> tuple[int, Received, str]:
    text = words(200, start=n * 1000)
    received = Received()
    async with server.client() as http:
        sid = await create_sid(http, agentId="echo", refreshIntervalMs=50)
        async with connect(
            http, "POST", sessions_url(sid, "/streamingContinue"), json_body=continue_body(text)
        ) as stream:
            await stream.read(received, limit=2)
            async with server.client() as other:
                cancel = await other.post(sessions_url(sid, "/cancel"), json={})
            await stream.read(received)
    body: dict[str, Any] = cancel.json()
    assert body == received.exchange(), body
    return cancel.status_code, received, text
