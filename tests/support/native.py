"""Helpers for tests of the native ``/v1`` surface: sessions, streamed replies, Redis snapshots.

Replies are predictable because the built-in agents are synthetic: ``echo`` answers with the
user's own text, so a test picks the reply length (and hence its duration at 50 tokens/s) by
the number of words it sends.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
from redis.asyncio import Redis

from server.embedded_redis import exit_with_parent, free_port
from streams.agents import builtin_agents
from streams.backends.synthetic import SyntheticParams, synthetic_reply
from tests.support.servers import REPO_ROOT, ServerProcess, new_key_prefix, start_server
from tests.support.sse import SseEvent, collect_events, iter_events, open_stream

_AGENTS = {agent.agent_id: agent for agent in builtin_agents()}
ECHO = SyntheticParams.parse(_AGENTS["echo"].model.params)
LOREM = SyntheticParams.parse(_AGENTS["default"].model.params)
ECHO_SECONDS_PER_TOKEN = 1 / ECHO.tokens_per_second
ECHO_FIRST_TOKEN_SECONDS = ECHO.first_token_latency_ms / 1000


def words(count: int, stem: str = "w") -> str:
    """``count`` words of one token each; the echo agent takes count/50 s to say them."""
    return " ".join(f"{stem}{i}" for i in range(count))


def expected_reply(user_text: str, agent_id: str = "echo") -> str:
    params = ECHO if agent_id == "echo" else LOREM
    return synthetic_reply(user_text, params)


# --- HTTP -------------------------------------------------------------------------------------


async def create_session(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    """POST /v1/sessions with camelCase ``fields``; asserts 201 and returns the Session."""
    response = await client.post("/v1/sessions", json=fields)
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session


async def get_session(client: httpx.AsyncClient, sid: str) -> dict[str, Any]:
    response = await client.get(f"/v1/sessions/{sid}")
    assert response.status_code == 200, response.text
    session: dict[str, Any] = response.json()
    return session


async def list_exchanges(client: httpx.AsyncClient, sid: str) -> list[dict[str, Any]]:
    """Every exchange of the session, oldest first, following the cursor."""
    exchanges: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 100, **({"cursor": cursor} if cursor else {})}
        response = await client.get(f"/v1/sessions/{sid}/exchanges", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        exchanges += page["data"]
        cursor = page["nextCursor"]
        if cursor is None:
            return exchanges


async def blocking_continue(client: httpx.AsyncClient, sid: str, text: str) -> dict[str, Any]:
    response = await client.post(
        f"/v1/sessions/{sid}/blockingContinue", json={"userInput": {"text": text}}
    )
    assert response.status_code == 200, response.text
    exchange: dict[str, Any] = response.json()
    return exchange


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


def continue_body(text: str, **extra: Any) -> dict[str, Any]:
    return {"userInput": {"text": text}, **extra}


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


async def wait_for(condition: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll the async ``condition()`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:g}s (last: {value!r})")
        await asyncio.sleep(interval)


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
    log_dir.mkdir(parents=True, exist_ok=True)
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    child_env["PYTHONUNBUFFERED"] = "1"
    for name, value in env.items():
        if value is None:
            child_env.pop(name, None)
        else:
            child_env[name] = value
    with (log_dir / "stdout.log").open("wb") as out, (log_dir / "stderr.log").open("wb") as err:
        proc = subprocess.Popen(
            [str(PARLEY), "serve", "--port", str(port), *args],
            cwd=REPO_ROOT,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            preexec_fn=exit_with_parent,
        )
    return ServerProcess(proc, port, log_dir, child_env)


def json_log(server: ServerProcess) -> list[dict[str, Any]]:
    """The structured log lines the server wrote on stderr."""
    lines: list[dict[str, Any]] = []
    for line in server.stderr_text().splitlines():
        with suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict):
                lines.append(entry)
    return lines
