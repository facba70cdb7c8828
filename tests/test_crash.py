"""A server process dying mid-reply: watchers elsewhere get an end, never a stuck stream."""

from __future__ import annotations

import asyncio
import json

import httpx

from streams.backends.synthetic import SyntheticParams, synthetic_reply
from tests.support.native import words
from tests.support.servers import ServerFactory
from tests.support.sse import delta_text, iter_events, open_stream, stream_events

FAST_EXPIRY = {"PARLEY_RUN_LOCK_TTL_SECONDS": "2", "PARLEY_KEEPALIVE_SECONDS": "1"}
TEXT = words(400)


async def start_reply(http: httpx.AsyncClient) -> tuple[str, asyncio.Task[None]]:
    """Begin a long echo reply; return the session and the task reading it."""
    created = await http.post("/v1/sessions", json={"agentId": "echo"})
    sid = str(created.json()["conversationId"])
    first_delta = asyncio.Event()

    async def read() -> None:
        body = {"userInput": {"text": TEXT}}
        async with open_stream(
            http, "POST", f"/v1/sessions/{sid}/streamingContinue", json_body=body
        ) as response:
            async for event in iter_events(response):
                if event.event == "delta":
                    first_delta.set()

    reader = asyncio.create_task(read())
    await asyncio.wait_for(first_delta.wait(), 10)
    return sid, reader


async def test_a_watcher_on_another_process_gets_an_interrupted_end_when_the_runner_dies(
    server_factory: ServerFactory,
) -> None:
    runner, watcher = server_factory(FAST_EXPIRY), server_factory(FAST_EXPIRY)
    async with runner.client() as on_runner, watcher.client() as on_watcher:
        sid, reader = await start_reply(on_runner)
        joined = asyncio.create_task(
            stream_events(on_watcher, "GET", f"/v1/sessions/{sid}/stream", max_seconds=20)
        )
        await asyncio.sleep(1.0)
        runner.kill()
        _, events = await asyncio.wait_for(joined, 20)
        reader.cancel()
        stored = (await on_watcher.get(f"/v1/sessions/{sid}/exchanges")).json()["data"][-1]
        after = await on_watcher.post(
            f"/v1/sessions/{sid}/blockingContinue", json={"userInput": {"text": "again"}}
        )

    end = json.loads(events[-1].data)
    assert events[-1].event == "error" and end["code"] == "interrupted"
    assert stored["status"] == "failed" and stored["finishReason"] == "interrupted"
    assert stored["response"]["text"] == delta_text(events) == end["exchange"]["response"]["text"]
    assert synthetic_reply(TEXT, SyntheticParams(mode="echo")).startswith(delta_text(events))
    assert after.status_code == 200 and after.json()["status"] == "completed"


async def test_resuming_an_exchange_whose_server_died_ends_instead_of_hanging(
    server_factory: ServerFactory,
) -> None:
    runner, survivor = server_factory(FAST_EXPIRY), server_factory(FAST_EXPIRY)
    async with runner.client() as on_runner, survivor.client() as on_survivor:
        sid, reader = await start_reply(on_runner)
        runner.kill()
        reader.cancel()
        await asyncio.sleep(2.5)  # the dead runner's lock lapses
        _, events = await stream_events(
            on_survivor, "GET", f"/v1/sessions/{sid}/stream", last_event_id="0-1", max_seconds=10
        )

    assert events[-1].event == "error"
    assert json.loads(events[-1].data)["code"] == "interrupted"
