"""SIGTERM: streams end with ``event: reconnect``; generations get their grace period."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import time

import httpx

from streams.backends.synthetic import SyntheticParams, synthetic_reply
from tests.support.native import words
from tests.support.servers import ServerFactory, ServerProcess
from tests.support.sse import SseEvent, iter_events, open_stream

ECHO = SyntheticParams(mode="echo")
GRACE = 3.0


async def watch(http: httpx.AsyncClient, text: str, first_delta: asyncio.Event) -> list[SseEvent]:
    created = await http.post("/v1/sessions", json={"agentId": "echo", "refreshIntervalMs": 100})
    sid = created.json()["conversationId"]
    events: list[SseEvent] = []
    body = {"userInput": {"text": text}}
    async with open_stream(
        http, "POST", f"/v1/sessions/{sid}/streamingContinue", json_body=body
    ) as response:
        async for event in iter_events(response):
            events.append(event)
            if event.event == "delta":
                first_delta.set()
    return events


async def wait_exit(server: ServerProcess, limit: float) -> float:
    start = time.monotonic()
    with contextlib.suppress(subprocess.TimeoutExpired):
        await asyncio.to_thread(server.proc.wait, limit)
    return time.monotonic() - start


async def test_sigterm_ends_every_stream_with_reconnect_and_stores_every_exchange(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(
        {"PARLEY_SHUTDOWN_GRACE_SECONDS": str(GRACE)}, graceful_timeout=GRACE + 5
    )
    texts = [words(60) if i % 2 else words(600) for i in range(20)]
    async with server.client() as http:
        started = [asyncio.Event() for _ in texts]
        streams = [
            asyncio.create_task(watch(http, t, s)) for t, s in zip(texts, started, strict=True)
        ]
        await asyncio.wait_for(asyncio.gather(*(s.wait() for s in started)), 10)
        server.send_signal(signal.SIGTERM)
        took = await wait_exit(server, GRACE + 5)
        results = await asyncio.wait_for(asyncio.gather(*streams), 5)

    assert not server.running and took <= GRACE + 1, f"exit took {took:.2f}s"
    assert all(events[-1].event == "reconnect" for events in results)
    assert all(events[-1].retry for events in results)
    assert "Traceback" not in server.stderr_text()

    successor = server_factory()
    async with successor.client() as http:
        statuses: list[str] = []
        for text, events in zip(texts, results, strict=True):
            started_event = next(e for e in events if e.event == "started")
            sid = json.loads(started_event.data)["conversationId"]
            stored = (await http.get(f"/v1/sessions/{sid}/exchanges")).json()["data"][-1]
            expected = synthetic_reply(text, ECHO)
            statuses.append(stored["status"])
            if stored["status"] == "completed":
                assert stored["response"]["text"] == expected
            else:
                assert stored["status"] == "failed", stored
                assert stored["finishReason"] == "shutdown"
                assert stored["response"]["text"] and expected.startswith(
                    stored["response"]["text"]
                )
    assert "completed" in statuses and "failed" in statuses
    tally = {s: statuses.count(s) for s in set(statuses)}
    print(f"\nexit {took:.2f}s after SIGTERM (grace {GRACE}s); exchanges {tally}")
