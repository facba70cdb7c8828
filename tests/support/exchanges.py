"""Native-API helpers for the durable-stream tests: sessions, expected replies, event reading.

Streams are read with the incremental SSE reader (tests/support/sse.py), never buffered, so a
test can stop reading after any event and drop the connection there, as a browser tab would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import httpx

from streams.agents import builtin_agents
from streams.backends.synthetic import SyntheticParams, synthetic_reply
from streams.tokens import count_tokens
from tests.support.sse import SseEvent, iter_events, open_stream

END_EVENTS = frozenset({"done", "error"})
ID_EVENTS = frozenset({"delta", "done", "error"})


def agent_params(agent_id: str) -> SyntheticParams:
    [agent] = [a for a in builtin_agents() if a.agent_id == agent_id]
    return SyntheticParams.parse(agent.model.params)


def expected_reply(agent_id: str, user_text: str) -> str:
    """What the built-in synthetic agent answers to `user_text`, exactly."""
    return synthetic_reply(user_text, agent_params(agent_id))


def words(count: int, start: int = 0) -> str:
    """An input of `count` distinct one-token words; the echo agent replies with it verbatim."""
    return " ".join(f"w{i}" for i in range(start, start + count))


def sessions_url(sid: str, tail: str = "") -> str:
    return f"/v1/sessions/{sid}{tail}"


async def create_session(client: httpx.AsyncClient, **body: Any) -> str:
    response = await client.post("/v1/sessions", json=body)
    assert response.status_code == 201, response.text
    sid: str = response.json()["conversationId"]
    return sid


async def exchanges(client: httpx.AsyncClient, sid: str) -> list[dict[str, Any]]:
    response = await client.get(sessions_url(sid, "/exchanges"), params={"limit": 100})
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def wait_until_idle(
    client: httpx.AsyncClient, sid: str, timeout: float = 20.0
) -> dict[str, Any]:
    """Poll the session until no exchange runs; return its last exchange."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session = (await client.get(sessions_url(sid))).json()
        if session["status"] == "idle":
            return (await exchanges(client, sid))[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"session {sid} still running after {timeout:g}s")


def continue_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"userInput": {"text": text}, **extra}


@dataclass
class Received:
    """Every block a client saw across its connections, and the id it would resume from."""

    blocks: list[SseEvent] = field(default_factory=list)
    last_event_id: str | None = None

    @property
    def items(self) -> list[SseEvent]:
        """Deltas and the end event, in arrival order."""
        return [b for b in self.blocks if b.event in ID_EVENTS]

    @property
    def deltas(self) -> list[SseEvent]:
        return [b for b in self.blocks if b.event == "delta"]

    @property
    def text(self) -> str:
        return "".join(d.json()["text"] for d in self.deltas)

    @property
    def end(self) -> SseEvent | None:
        ends = [b for b in self.blocks if b.event in END_EVENTS]
        assert len(ends) <= 1, f"more than one end event: {ends}"
        return ends[0] if ends else None

    @property
    def finished(self) -> bool:
        return any(b.event in END_EVENTS for b in self.blocks)

    def exchange(self) -> dict[str, Any]:
        end = self.end
        assert end is not None and end.event == "done", f"no done event in {self.blocks[-3:]}"
        data: dict[str, Any] = end.json()
        return data


class Connection:
    """One open stream whose events can be read in several steps, then dropped."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.status_code = response.status_code
        self._events = cast(AsyncGenerator[SseEvent, None], iter_events(response))

    async def read(
        self,
        into: Received,
        *,
        limit: int | None = None,
        until: Callable[[SseEvent], bool] | None = None,
    ) -> bool:
        """Read blocks into `into` until `limit` deltas/ends arrived, `until` holds, or the end.

        Returns whether the end event arrived.
        """
        if limit == 0:
            return into.finished
        counted = 0
        async for block in self._events:
            into.blocks.append(block)
            if block.id is not None:
                into.last_event_id = block.id
            if block.event in END_EVENTS:
                return True
            if block.event in ID_EVENTS:
                counted += 1
            if limit is not None and counted >= limit:
                return False
            if until is not None and until(block):
                return False
        return into.finished

    async def aclose(self) -> None:
        await self._events.aclose()


@contextlib.asynccontextmanager
async def connect(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    json_body: Any = None,
    last_event_id: str | None = None,
) -> AsyncIterator[Connection]:
    """Open a stream as EventSource would; leaving the block drops the connection unread."""
    async with open_stream(
        client, method, url, json_body=json_body, last_event_id=last_event_id
    ) as response:
        connection = Connection(response)
        try:
            yield connection
        finally:
            await connection.aclose()


async def wait_for(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)


def assert_ordered_once(items: list[SseEvent]) -> None:
    """Ids and seqs strictly increase: nothing arrived twice or out of order."""
    ids = [tuple(map(int, (i.id or "").split("-"))) for i in items]
    assert ids == sorted(set(ids)), f"ids not strictly increasing: {[i.id for i in items]}"
    seqs = [i.json()["seq"] for i in items if i.event == "delta"]
    assert seqs == sorted(set(seqs)), f"seqs not strictly increasing: {seqs}"


def assert_cancelled_with_partial_text(
    exchange: dict[str, Any], received: Received, full_reply: str
) -> None:
    """The stored/ended exchange keeps what was streamed so far and the usage counted for it."""
    text = exchange["response"]["text"]
    assert exchange["status"] == "cancelled"
    assert exchange["finishReason"] == "cancelled"
    assert text == received.text
    assert 0 < len(text) < len(full_reply)
    assert full_reply.startswith(text)
    usage = exchange["usage"]
    assert usage["outputTokens"] == count_tokens(text)
    assert usage["inputTokens"] > 0
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    last_delta_usage = received.deltas[-1].json()["usage"]
    assert last_delta_usage["outputTokens"] <= usage["outputTokens"]
