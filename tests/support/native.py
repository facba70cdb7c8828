"""Helpers for tests of the native ``/v1`` surface: sessions, streamed replies, Redis snapshots.

Replies are predictable because the built-in agents are synthetic: ``echo`` answers with the
user's own text, so a test picks the reply length (and hence its duration at 50 tokens/s) by
the number of words it sends.

Streams are read with the incremental SSE reader (tests/support/sse.py), never buffered, so a
test can stop reading after any event and drop the connection there, as a browser tab would:
``stream_reply`` reads one to its end, ``streaming`` leaves one open, and ``connect`` opens
one whose events are read in steps into a ``Received``, across as many connections as it takes.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
from redis.asyncio import Redis

from server.embedded_redis import free_port
from streams.agents import builtin_agents
from streams.backends.synthetic import SyntheticParams, synthetic_reply
from streams.tokens import count_tokens
from tests.support.servers import ServerProcess, child_env, new_key_prefix, spawn, start_server
from tests.support.sse import SseEvent, collect_events, iter_events, open_stream

T = TypeVar("T")

_AGENTS = {agent.agent_id: agent for agent in builtin_agents()}


def agent_params(agent_id: str) -> SyntheticParams:
    """The synthetic model's settings of the built-in agent ``agent_id``."""
    return SyntheticParams.parse(_AGENTS[agent_id].model.params)


ECHO = agent_params("echo")
ECHO_SECONDS_PER_TOKEN = 1 / ECHO.tokens_per_second
ECHO_FIRST_TOKEN_SECONDS = ECHO.first_token_latency_ms / 1000


def words(count: int, stem: str = "w", *, start: int = 0) -> str:
    """``count`` distinct words of one token each, ``{stem}{start}`` on; the echo agent replies
    with them verbatim and takes count/50 s to say them."""
    return " ".join(f"{stem}{i}" for i in range(start, start + count))


def expected_reply(agent_id: str, user_text: str) -> str:
    """What the built-in synthetic agent answers to ``user_text``, exactly."""
    return synthetic_reply(user_text, agent_params(agent_id))


# --- HTTP -------------------------------------------------------------------------------------


def sessions_url(sid: str, tail: str = "") -> str:
    return f"/v1/sessions/{sid}{tail}"


async def create_session(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    """POST /v1/sessions with camelCase ``fields``; asserts 201 and returns the Session."""
    response = await client.post("/v1/sessions", json=fields)
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session


async def create_sid(client: httpx.AsyncClient, **fields: Any) -> str:
    """``create_session``, returning only the new session's id (its ``conversationId``)."""
    sid: str = (await create_session(client, **fields))["conversationId"]
    return sid


async def get_session(client: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    response = await client.get(sessions_url(sid))
    assert response.status_code == 200, response.text
    session: dict[str, Any] = response.json()
    return session


async def list_exchanges(client: httpx.AsyncClient, sid: str) -> list[dict[str, Any]]:
    """Every exchange of the session, oldest first, following the cursor."""
    exchanges: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        response = await client.get(sessions_url(sid, "/exchanges"), params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        exchanges += page["data"]
        cursor = page["nextCursor"]
        if cursor is None:
            return exchanges


def continue_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"userInput": {"text": text}, **extra}


async def blocking_continue(client: httpx.AsyncClient, sid: str, text: str) -> dict[str, Any]:
    """blockingContinue; asserts 200 and returns the Exchange."""
    response = await client.post(sessions_url(sid, "/blockingContinue"), json=continue_body(text))
    assert response.status_code == 200, response.text
    exchange: dict[str, Any] = response.json()
    return exchange


async def wait_until_idle(
    client: httpx.AsyncClient, sid: str, timeout: float = 20.0
) -> dict[str, Any]:
    """Poll the session until no exchange runs; return its last exchange."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session = (await client.get(sessions_url(sid))).json()
        if session["status"] == "idle":
            return (await list_exchanges(client, sid))[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"session {sid} still running after {timeout:g}s")


def assert_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is the error envelope with ``status``; returns its ``error`` object."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "requestId"}, body
    error: dict[str, Any] = body["error"]
    assert {"code", "message"} <= set(error) <= {"code", "message", "details"}, error
    assert isinstance(error["message"], str) and error["message"]
    if code is not None:
        assert error["code"] == code, error
    assert response.headers["x-request-id"] == body["requestId"]
    return error


# --- streamed replies -------------------------------------------------------------------------


@dataclass
class Reply:
    """One streamingContinue as the client saw it, with the time each event landed."""

    sent_at: float
    events: list[SseEvent]
    response: httpx.Response

    def of(self, kind: str) -> list[SseEvent]:
        return [event for event in self.events if event.event == kind]

    @property
    def started(self) -> SseEvent:
        [started] = self.of("started")
        return started

    @property
    def deltas(self) -> list[SseEvent]:
        return self.of("delta")

    @property
    def delta_data(self) -> list[dict[str, Any]]:
        return [event.json() for event in self.deltas]

    @property
    def done(self) -> dict[str, Any]:
        [done] = self.of("done")
        data: dict[str, Any] = done.json()
        return data

    @property
    def text(self) -> str:
        return "".join(delta["text"] for delta in self.delta_data)

    def arrival_gaps(self) -> list[float]:
        """Seconds between consecutive deltas, as the client received them."""
        times = [event.received_at for event in self.deltas]
        return [later - earlier for earlier, later in itertools.pairwise(times)]

    def id_gaps_ms(self) -> list[int]:
        """Milliseconds between consecutive deltas by their ids (Redis's clock at XADD)."""
        stamps = [stream_id_ms(event.id) for event in self.deltas]
        return [later - earlier for earlier, later in itertools.pairwise(stamps)]


def stream_id_ms(event_id: str | None) -> int:
    assert event_id is not None
    return int(event_id.split("-")[0])


def stream_id_key(event_id: str | None) -> tuple[int, int]:
    assert event_id is not None
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq)


async def stream_reply(
    client: httpx.AsyncClient, sid: str, text: str, max_seconds: float = 30.0, **extra: Any
) -> Reply:
    """streamingContinue read incrementally up to its terminal event."""
    url = f"/v1/sessions/{sid}/streamingContinue"
    sent_at = time.monotonic()
    async with open_stream(client, "POST", url, json_body=continue_body(text, **extra)) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        assert response.headers["content-type"].startswith("text/event-stream")
        events = await collect_events(response, max_seconds=max_seconds)
    return Reply(sent_at, events, response)


@asynccontextmanager
async def streaming(
    client: httpx.AsyncClient, sid: str, text: str, **extra: Any
) -> AsyncIterator[StreamInFlight]:
    """A streamingContinue left open for the test to read as it likes; started is read."""
    url = f"/v1/sessions/{sid}/streamingContinue"
    async with open_stream(client, "POST", url, json_body=continue_body(text, **extra)) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        flight = StreamInFlight(response)
        started = await flight.next_event("started")
        flight.exchange_id = started.json()["exchangeId"]
        yield flight


@dataclass
class StreamInFlight:
    response: httpx.Response
    exchange_id: str = ""
    seen: list[SseEvent] = field(default_factory=list)
    _events: AsyncIterator[SseEvent] | None = None

    async def next_event(self, kind: str, timeout: float = 10.0) -> SseEvent:
        if self._events is None:
            self._events = iter_events(self.response).__aiter__()

        async def read() -> SseEvent:
            assert self._events is not None
            async for event in self._events:
                self.seen.append(event)
                if event.event == kind:
                    return event
            raise AssertionError(f"the stream ended before a {kind!r} event")

        return await asyncio.wait_for(read(), timeout)

    async def rest(self, timeout: float = 10.0) -> list[SseEvent]:
        """Every further event until the server closes the stream."""
        if self._events is None:
            self._events = iter_events(self.response).__aiter__()
        events: list[SseEvent] = []

        async def read() -> None:
            assert self._events is not None
            async for event in self._events:
                events.append(event)

        await asyncio.wait_for(read(), timeout)
        self.seen += events
        return events


# --- streams read in steps, across connections -----------------------------------------------

END_EVENTS = frozenset({"done", "error"})
ID_EVENTS = frozenset({"delta", "done", "error"})


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


@asynccontextmanager
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


# --- Redis ------------------------------------------------------------------------------------


async def keys_under(redis: Redis, pattern: str) -> set[str]:
    return {key async for key in redis.scan_iter(match=pattern, count=1000)}


async def snapshot(redis_url: str, prefix: str) -> dict[bytes, tuple[bytes, Any]]:
    """Every key under ``prefix`` with its type and contents, TTLs aside.

    Contents are read per type rather than DUMPed: a DUMP also encodes field order, which a
    Redis reloading its append-only file does not keep.
    """
    raw = Redis.from_url(redis_url)
    try:
        keys = sorted([key async for key in raw.scan_iter(match=f"{prefix}:*", count=1000)])
        return {key: await _contents(raw, key) for key in keys}
    finally:
        await raw.aclose()


async def _contents(redis: Redis, key: bytes) -> tuple[bytes, Any]:
    kind = cast(bytes, await redis.type(key))  # a client without decode_responses
    readers: dict[bytes, Any] = {
        b"string": lambda: redis.get(key),
        b"hash": lambda: redis.hgetall(key),
        b"list": lambda: redis.lrange(key, 0, -1),
        b"set": lambda: redis.smembers(key),
        b"zset": lambda: redis.zrange(key, 0, -1, withscores=True),
        b"stream": lambda: redis.xrange(key),
    }
    reader = readers.get(kind)
    return kind, (await reader() if reader else None)


async def wait_for(check: Callable[[], Awaitable[T]], timeout: float, what: str) -> T:
    """Poll the async ``check()`` every 50 ms until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what} (last: {value!r})"
            )
        await asyncio.sleep(0.05)
    return value


# --- servers of a module's own ----------------------------------------------------------------


@contextmanager
def own_server(
    log_dir: Path, redis_url: str, env: Mapping[str, str | None] | None = None
) -> Iterator[ServerProcess]:
    """A server with its own key prefix, for a module whose tests need special settings."""
    server = start_server(log_dir, redis_url=redis_url, key_prefix=new_key_prefix(), env=env)
    try:
        yield server
    finally:
        server.terminate()


def record(name: str, **figures: Any) -> None:
    """Print figures a test observed (seen with ``pytest -s``) in one greppable line."""
    shown = " ".join(f"{key}={value}" for key, value in figures.items())
    print(f"\n[figures] {name}: {shown}")


# --- `parley serve` ---------------------------------------------------------------------------

PARLEY = Path(sys.executable).parent / "parley"


def parley_serve(
    log_dir: Path,
    args: Sequence[str],
    env: Mapping[str, str | None],
    *,
    port: int | None = None,
) -> ServerProcess:
    """Start ``parley serve --port <free> *args`` (not waiting for it) with only ``env`` set.

    Every PARLEY_* variable of ours is dropped first, so an unset PARLEY_REDIS_URL is unset.
    """
    port = port or free_port()
    environ = child_env(env, PYTHONUNBUFFERED="1")
    proc = spawn([str(PARLEY), "serve", "--port", str(port), *args], log_dir, environ)
    return ServerProcess(proc, port, log_dir, environ)


def json_log(server: ServerProcess) -> list[dict[str, Any]]:
    """The structured log lines the server wrote on stderr."""
    lines: list[dict[str, Any]] = []
    for line in server.stderr_text().splitlines():
        with suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                lines.append(entry)
    return lines
