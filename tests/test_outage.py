"""Redis going away mid-stream: the hub reconnects, readers resync, runners flush their backlog."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from server.embedded_redis import RedisProcess
from streams.backends.synthetic import SyntheticParams, synthetic_reply
from tests.support.native import words
from tests.support.servers import ServerFactory
from tests.support.sse import SseEvent, delta_text, iter_events, open_stream

ECHO = SyntheticParams(mode="echo")


async def new_session(http: httpx.AsyncClient) -> str:
    reply = await http.post("/v1/sessions", json={"agentId": "echo", "refreshIntervalMs": 100})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["conversationId"])


async def read_until_end(response: httpx.Response, into: list[SseEvent]) -> None:
    async for event in iter_events(response):
        into.append(event)
        if event.event in ("done", "error"):
            return


async def wait_for_status(http: httpx.AsyncClient, path: str, status: int, limit: float) -> float:
    """Poll ``path`` until it answers ``status``; return how long that took."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            if (await http.get(path)).status_code == status:
                return time.monotonic() - start
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} did not answer {status} within {limit}s")


def end_payload(events: list[SseEvent]) -> dict[str, Any]:
    assert events and events[-1].event in ("done", "error"), [e.event for e in events[-3:]]
    payload: dict[str, Any] = json.loads(events[-1].data)
    return payload


async def test_a_stream_survives_redis_restarting_mid_reply(
    redis_factory: Callable[..., RedisProcess], server_factory: ServerFactory
) -> None:
    redis = redis_factory(appendonly=True)
    server = server_factory(redis_url=redis.url)
    text = words(300)
    async with server.client() as http:
        sid = await new_session(http)
        events: list[SseEvent] = []
        body = {"userInput": {"text": text}}
        async with open_stream(
            http, "POST", f"/v1/sessions/{sid}/streamingContinue", json_body=body
        ) as response:
            reader = asyncio.create_task(read_until_end(response, events))
            await asyncio.sleep(1.5)
            redis.stop()
            await wait_for_status(http, "/readyz", 503, 5)
            refused = await http.post("/v1/sessions", json={})
            await asyncio.sleep(5)
            redis.start()
            recovery = await wait_for_status(http, "/readyz", 200, 15)
            await asyncio.wait_for(reader, 30)
        stored = (await http.get(f"/v1/sessions/{sid}/exchanges")).json()["data"][-1]

    expected = synthetic_reply(text, ECHO)
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert end_payload(events)["status"] == "completed"
    assert delta_text(events) == expected == stored["response"]["text"]
    resyncs = [json.loads(line) for line in server.stderr_text().splitlines() if "resyncs" in line]
    print(f"\nrecovery after restart: {recovery:.2f}s; hub log: {resyncs}")


async def test_an_outage_past_the_bound_fails_the_exchange_and_keeps_its_text(
    redis_factory: Callable[..., RedisProcess], server_factory: ServerFactory
) -> None:
    redis = redis_factory(appendonly=True)
    server = server_factory({"PARLEY_REDIS_OUTAGE_BOUND_SECONDS": "2"}, redis_url=redis.url)
    text = words(300)
    async with server.client() as http:
        sid = await new_session(http)
        events: list[SseEvent] = []
        body = {"userInput": {"text": text}}
        async with open_stream(
            http, "POST", f"/v1/sessions/{sid}/streamingContinue", json_body=body
        ) as response:
            reader = asyncio.create_task(read_until_end(response, events))
            await asyncio.sleep(1.0)
            redis.stop()
            await asyncio.sleep(4)
            redis.start()
            await asyncio.wait_for(reader, 30)
        stored = (await http.get(f"/v1/sessions/{sid}/exchanges")).json()["data"][-1]
        again = await http.post(
            f"/v1/sessions/{sid}/blockingContinue", json={"userInput": {"text": "still here"}}
        )

    end = end_payload(events)
    assert events[-1].event == "error" and end["code"] == "redis_unavailable"
    assert stored["status"] == "failed" and stored["error"]["code"] == "redis_unavailable"
    partial = stored["response"]["text"]
    assert partial and synthetic_reply(text, ECHO).startswith(partial)
    assert delta_text(events) == partial
    assert again.status_code == 200 and again.json()["status"] == "completed"
