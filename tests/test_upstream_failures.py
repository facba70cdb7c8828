"""Upstream failures end to end: the exchange fails with a code and a message, keeps its
partial text, every watcher gets the error event, the session stays usable, and no key ever
shows in a response or a log line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.support.agents import (
    OPENAI_KEY,
    SECRETS,
    TEAM_KEY,
    TEAM_KEY_ENV,
    agent_session,
    ask_streaming,
    upstream_env,
)
from tests.support.native import blocking_continue, list_exchanges
from tests.support.ports import free_port
from tests.support.servers import ServerFactory, ServerProcess
from tests.support.sse import TERMINAL_EVENTS, SseEvent, collect_events, iter_events, open_stream
from tests.support.upstream import Reply, UpstreamServer


def error_event(events: list[SseEvent]) -> dict[str, Any]:
    assert events[-1].event == "error", [e.event for e in events]
    data: dict[str, Any] = events[-1].json()
    return data


async def until_end(events: AsyncIterator[SseEvent]) -> list[SseEvent]:
    """The rest of a stream already being read, up to its terminal event."""
    seen: list[SseEvent] = []
    async for event in events:
        seen.append(event)
        if event.event in TERMINAL_EVENTS:
            break
    return seen


@dataclass(frozen=True)
class Failure:
    provider: str
    replies: tuple[Reply, ...]
    code: str
    message: str
    partial: str = ""


FAILURES = {
    "first-token timeout": Failure(
        "openai", (Reply(hang_after=0), Reply(hang_after=0)), "upstream_timeout", "no reply text"
    ),
    "idle timeout": Failure(
        "openai", (Reply(hang_after=2),), "upstream_timeout", "sent nothing", "Hello,"
    ),
    "5xx": Failure(
        "openai",
        (Reply(status=500, error_message="The engine is on fire."),) * 2,
        "upstream_server_error",
        "The engine is on fire.",
    ),
    "429 until retries run out": Failure(
        "anthropic",
        (Reply(status=429, retry_after="0", error_message="Slow down."),) * 2,
        "upstream_rate_limited",
        "Slow down.",
    ),
    "malformed stream": Failure(
        "openai", (Reply(malformed_after=2),), "upstream_bad_response", "invalid JSON", "Hello,"
    ),
    "drop mid-reply": Failure(
        "anthropic", (Reply(drop_after=2),), "upstream_disconnected", "dropped", "Hello,"
    ),
    "error event mid-stream": Failure(
        "anthropic",
        (Reply(error_after=2, error_message="Overloaded"),),
        "upstream_server_error",
        "Overloaded",
        "Hello,",
    ),
}


@pytest.mark.parametrize("case", list(FAILURES))
async def test_an_upstream_failure_fails_the_exchange_and_the_session_goes_on(
    http: httpx.AsyncClient, upstream: UpstreamServer, case: str
) -> None:
    failure = FAILURES[case]
    sid = await agent_session(http, failure.provider)
    upstream.queue(*failure.replies)

    _, events = await ask_streaming(http, sid, "please")
    error = error_event(events)
    streamed = "".join(e.json()["text"] for e in events if e.event == "delta")
    after = await blocking_continue(http, sid, "again")

    assert error["code"] == failure.code
    assert failure.message in error["message"]
    assert error["exchange"]["status"] == "failed"
    assert error["exchange"]["error"]["code"] == failure.code
    assert error["exchange"]["response"]["text"] == streamed == failure.partial
    stored = (await list_exchanges(http, sid))[0]
    assert (stored["status"], stored["response"]["text"]) == ("failed", failure.partial)
    assert after["status"] == "completed"


async def test_a_connect_error_fails_the_exchange(http: httpx.AsyncClient) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    sid = await agent_session(http, upstream={"baseUrl": dead})

    _, events = await ask_streaming(http, sid, "anyone there?")

    error = error_event(events)
    assert error["code"] == "upstream_connect_error"
    assert "could not reach the upstream" in error["message"]
    assert error["retryable"] is True
    assert (await list_exchanges(http, sid))[0]["status"] == "failed"


async def test_a_429_with_retry_after_is_retried_after_that_wait(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    sid = await agent_session(http)
    upstream.queue(Reply(status=429, retry_after="1", error_message="Slow down."))

    exchange = await blocking_continue(http, sid, "hello")

    first, second = upstream.requests
    assert exchange["status"] == "completed"
    assert exchange["response"]["text"] == "Hello, world!"
    assert second.received_at - first.received_at >= 0.95


async def test_no_retry_once_text_was_streamed(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    sid = await agent_session(http)
    upstream.queue(Reply(drop_after=1))

    exchange = await blocking_continue(http, sid, "hello")

    assert exchange["status"] == "failed"
    assert exchange["response"]["text"] == "Hello"
    assert len(upstream.requests) == 1


async def test_every_watcher_gets_the_error_event(
    http: httpx.AsyncClient, parley: ServerProcess, upstream: UpstreamServer
) -> None:
    sid = await agent_session(http, "anthropic")
    upstream.queue(Reply(pieces=[f" w{i}" for i in range(10)], token_delay=0.1, drop_after=6))

    async with (
        open_stream(
            http,
            "POST",
            f"/v1/sessions/{sid}/streamingContinue",
            json_body={"userInput": {"text": "go"}},
        ) as caller,
        parley.client() as other,
    ):
        reader = iter_events(caller)
        async for event in reader:
            if event.event == "delta":
                break
        async with open_stream(other, "GET", f"/v1/sessions/{sid}/stream") as watcher:
            watched, called = await asyncio.gather(
                collect_events(watcher, max_seconds=10), asyncio.wait_for(until_end(reader), 10)
            )

    for events in (watched, called):
        error = error_event(events)
        assert error["code"] == "upstream_disconnected"
        assert error["exchange"]["response"]["text"] == " w0 w1 w2 w3 w4 w5"


async def test_the_upstream_s_own_error_text_reaches_the_user_without_the_key(
    http: httpx.AsyncClient, upstream: UpstreamServer
) -> None:
    sid = await agent_session(http)
    leaky = f"Incorrect API key provided: {OPENAI_KEY}. Find your key in the dashboard."
    upstream.queue(Reply(status=401, error_message=leaky))

    exchange = await blocking_continue(http, sid, "hello")

    message = exchange["error"]["message"]
    assert "HTTP 401" in message
    assert "Incorrect API key provided: [redacted]. Find your key" in message
    assert OPENAI_KEY not in str(exchange)


async def test_an_agent_whose_key_variable_is_gone_fails_its_exchanges_cleanly(
    http: httpx.AsyncClient,
    parley: ServerProcess,
    upstream: UpstreamServer,
    server_factory: ServerFactory,
) -> None:
    sid = await agent_session(http, upstream={"apiKeyEnv": TEAM_KEY_ENV})
    without_key = server_factory(
        upstream_env(upstream, **{TEAM_KEY_ENV: None}), key_prefix=parley.key_prefix
    )

    async with without_key.client() as other:
        _, events = await ask_streaming(other, sid, "hello")

    error = error_event(events)
    assert error["code"] == "upstream_not_configured"
    assert TEAM_KEY_ENV in error["message"]
    assert upstream.requests == []


async def test_keys_never_show_in_responses_or_log_files(
    http: httpx.AsyncClient, parley: ServerProcess, upstream: UpstreamServer
) -> None:
    sid = await agent_session(http, upstream={"apiKeyEnv": TEAM_KEY_ENV})
    upstream.queue(
        Reply(status=401, error_message=f"bad key {TEAM_KEY}"),  # the key this agent sends
        Reply(status=500),
        Reply(status=500),
        Reply(drop_after=1),
    )
    bodies = [
        (await http.post(f"/v1/sessions/{sid}/blockingContinue", json=body)).text
        for body in [{"userInput": {"text": f"turn {n}"}} for n in range(4)]
    ]
    bodies += [
        (await http.get("/v1/agents", params={"limit": 100})).text,
        (await http.get(f"/v1/sessions/{sid}/exchanges")).text,
        (await http.get("/schema/openapi.json")).text,
    ]
    await asyncio.sleep(0.2)  # let the server's log lines land
    logs = parley.stdout_text() + parley.stderr_text()

    assert "model backend failed" in logs  # failures are logged, with scrubbed messages
    for secret in SECRETS:
        assert all(secret not in body for body in bodies)
        assert secret not in logs
