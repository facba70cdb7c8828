"""Parley with sse-starlette as its stream writer (server.bench.sse_writer) keeps the guarantees
of its own writer: the exact reply, Parley's headers, the open-streams count, on_close, the
goodbye on SIGTERM, keepalive pings, and the send timeout."""

from __future__ import annotations

import asyncio
import itertools
import re
import signal
from collections.abc import Iterator

import httpx
import pytest

from streams.backends.synthetic import synthetic_reply
from tests.support.native import (
    Received,
    connect,
    continue_body,
    create_sid,
    expected_reply,
    sessions_url,
    stream_reply,
    streaming,
    wait_until_idle,
    words,
)
from tests.support.servers import ServerFactory, ServerProcess, new_key_prefix, start_server
from tests.support.sse import SseEvent, delta_text, stream_events
from tests.test_shutdown import wait_exit, watch
from tests.test_slow_client import FAST, RawStream, fast_session

SSE_APP = "server.bench.sse_writer:create_app"
SETTINGS = {"PARLEY_KEEPALIVE_SECONDS": "1", "PARLEY_SEND_TIMEOUT_SECONDS": "1"}
STREAM_HEADERS = ("content-type", "cache-control", "x-accel-buffering", "connection")


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[ServerProcess]:
    """The variant with a one-second keepalive and a one-second send timeout."""
    server = start_server(
        tmp_path_factory.mktemp("sse-writer"),
        redis_url=redis_url,
        key_prefix=new_key_prefix(),
        env=SETTINGS,
        app=SSE_APP,
    )
    yield server
    server.terminate()


async def open_streams(server: ServerProcess) -> float:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as http:
        text = (await http.get("/metrics")).text
    found = re.search(r"^parley_open_streams (\S+)$", text, re.M)
    assert found, text
    return float(found.group(1))


def is_ping(block: SseEvent) -> bool:
    return block.is_comment_only and block.comments == ("ping",)


async def test_a_native_stream_is_the_exact_reply_with_the_default_writers_headers(
    variant: ServerProcess, client: httpx.AsyncClient
) -> None:
    text = words(40)
    async with variant.client() as http:
        sid = await create_sid(http, agentId="echo", refreshIntervalMs=50)
        reply = await stream_reply(http, sid, text)
    default_sid = await create_sid(client, agentId="echo", refreshIntervalMs=50)
    default = await stream_reply(client, default_sid, text)

    assert reply.text == reply.done["response"]["text"] == expected_reply("echo", text)
    assert reply.events[0].retry == 2000 and reply.started.json()["conversationId"] == sid
    assert [e.event for e in reply.events[1:]] == [e.event for e in default.events[1:]]
    headers = {name: reply.response.headers.get(name) for name in STREAM_HEADERS}
    assert headers == {name: default.response.headers.get(name) for name in STREAM_HEADERS}
    assert "Traceback" not in variant.stderr_text()


async def test_a_stream_is_counted_while_open_and_on_close_runs_when_the_client_leaves(
    variant: ServerProcess,
) -> None:
    text = words(200)
    async with variant.client() as http:
        sid = await create_sid(http, agentId="echo", refreshIntervalMs=50)
        async with streaming(http, sid, text, onDisconnect="cancel") as flight:
            await flight.next_event("delta")
            during = await open_streams(variant)
        stored = await wait_until_idle(http, sid, timeout=5)
    after = await open_streams(variant)

    assert (during, after) == (1, 0)
    assert stored["status"] == "cancelled", "on_close(False) cancels an onDisconnect=cancel turn"
    assert len(stored["response"]["text"]) < len(expected_reply("echo", text))


async def test_sigterm_ends_every_stream_with_reconnect(server_factory: ServerFactory) -> None:
    grace = 3.0
    server = server_factory(
        {"PARLEY_SHUTDOWN_GRACE_SECONDS": str(grace)}, graceful_timeout=grace + 5, app=SSE_APP
    )
    texts = [words(60) if i % 2 else words(600) for i in range(6)]
    async with server.client() as http:
        started = [asyncio.Event() for _ in texts]
        streams = [
            asyncio.create_task(watch(http, t, s)) for t, s in zip(texts, started, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(s.wait() for s in started)), 10)
        server.send_signal(signal.SIGTERM)
        took = await wait_exit(server, grace + 5)
        results = await asyncio.wait_for(asyncio.gather(*streams), 5)

    assert not server.running and took <= grace + 1, f"exit took {took:.2f}s"
    assert all(events[-1].event == "reconnect" for events in results)
    assert all(events[-1].retry == 2000 and events[-1].data == "{}" for events in results)
    assert "Traceback" not in server.stderr_text()


async def test_an_idle_stream_between_two_deltas_receives_the_surfaces_pings(
    variant: ServerProcess,
) -> None:
    text = "Say something, slowly."
    received = Received()
    async with variant.client() as http:
        sid = await create_sid(http, refreshIntervalMs=5000)
        async with connect(
            http, "POST", sessions_url(sid, "/streamingContinue"), json_body=continue_body(text)
        ) as stream:
            await stream.read(received)

    kinds = [b.event for b in received.blocks]
    first, second = kinds.index("delta"), kinds.index("delta", kinds.index("delta") + 1)
    pings = [b for b in received.blocks[first:second] if is_ping(b)]
    assert len(pings) >= 3, [b.comments or b.event for b in received.blocks]
    gaps = [b.received_at - a.received_at for a, b in itertools.pairwise(pings)]
    assert all(0.8 < gap < 2.5 for gap in gaps), gaps
    comments = [b for b in received.blocks if b.comments]
    assert all(is_ping(b) for b in comments), "no pings but the surface's own"
    assert received.text == received.exchange()["response"]["text"]
    assert received.text == expected_reply("default", text)


async def test_a_reader_stuck_past_the_send_timeout_is_cut_off_and_can_resume(
    variant: ServerProcess,
) -> None:
    async with variant.client() as http:
        sid = await fast_session(http)
        stream = await RawStream.post(
            variant.port, f"/v1/sessions/{sid}/streamingContinue", {"userInput": {"text": "go"}}
        )
        await asyncio.sleep(9)  # long enough to fill the kernel's socket buffers
        first = [e async for e in stream.events()]
        stream.close()
        last_id = next(e.id for e in reversed(first) if e.id)
        _, rest = await stream_events(
            http, "GET", f"/v1/sessions/{sid}/stream", last_event_id=last_id
        )

    assert not any(e.event in ("done", "error") for e in first), "the stuck stream was cut"
    assert rest[-1].event == "done"
    assert delta_text(first) + delta_text(rest) == synthetic_reply("go", FAST)
    assert "client stopped reading" in variant.stderr_text()
    assert "Traceback" not in variant.stderr_text()
    assert await open_streams(variant) == 0
