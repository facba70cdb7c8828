"""Helpers for the engine-core tests: a paced backend, polling with a deadline, log readers.

Nothing here talks HTTP: the tests drive `streams/` directly against a real Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import msgspec
from redis.asyncio import Redis

from streams.backends.base import Chunk, Message, ModelRequest, ModelSpec
from streams.batcher import ScriptBatcher
from streams.clock import now_ms
from streams.config import EngineConfig
from streams.events import Delta, Item, stream_key
from streams.keys import Keys
from streams.runner import ExchangeRunner, ExchangeSpec, RunObserver
from streams.store import Store
from streams.types import Exchange, NewSession, Usage

T = TypeVar("T")

OWNER = "owner-1"
# A step of a PacedBackend: yield a chunk, sleep some seconds, wait for an event, or raise.
Step = Chunk | float | asyncio.Event | Exception


def text(value: str) -> Chunk:
    return Chunk(text=value)


class PacedBackend:
    """A `Backend` that plays `steps` in order, recording the wall-clock ms of each yield.

    ``closed`` is set when the stream ends in any way (finished, or cancelled by the runner).
    """

    def __init__(self, steps: Sequence[Step]) -> None:
        self.steps = list(steps)
        self.yielded_ms: list[float] = []
        self.closed = asyncio.Event()

    async def stream(self, request: ModelRequest) -> AsyncIterator[Chunk]:
        try:
            for step in self.steps:
                if isinstance(step, Chunk):
                    self.yielded_ms.append(time.time() * 1000)
                    yield step
                elif isinstance(step, asyncio.Event):
                    await step.wait()
                elif isinstance(step, Exception):
                    raise step
                else:
                    await asyncio.sleep(step)
        finally:
            self.closed.set()


class RecordingObserver(RunObserver):
    """Counts the runner's Redis errors (``outage_seen`` is set at the first one) and
    records the status each run ended with."""

    def __init__(self) -> None:
        self.redis_errors = 0
        self.outage_seen = asyncio.Event()
        self.statuses: list[str] = []

    def redis_error(self) -> None:
        self.redis_errors += 1
        self.outage_seen.set()

    def finished(self, status: str, seconds: float) -> None:
        self.statuses.append(status)


async def until(
    check: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout: float = 5.0
) -> T:
    """Poll ``check`` until ``ok`` accepts its value; fail with the last value at the deadline."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await check()
        if ok(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"still not there after {timeout:g}s; last value: {value!r}")
        await asyncio.sleep(0.01)


async def until_true(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    async def check() -> bool:
        return predicate()

    await until(check, bool, timeout)


async def new_session(store: Store, owner: str = OWNER) -> str:
    session = await store.create_session(owner, NewSession(agent_id="echo", title="chat"))
    return session.session_id


async def begin(store: Store, sid: str, xid: str = "x1", user_text: str = "hello") -> int:
    """Start exchange ``xid`` (takes the session's run lock); return its creation time."""
    created = now_ms()
    await store.begin_exchange(OWNER, sid, xid, user_text, {}, created)
    return created


@dataclass
class Rig:
    """What a runner needs, built the way the service builds it; one runner per rig."""

    store: Store
    batcher: ScriptBatcher
    keys: Keys
    config: EngineConfig
    observer: RecordingObserver = field(default_factory=RecordingObserver)

    async def runner(
        self,
        backend: PacedBackend,
        *,
        interval_ms: int = 50,
        sid: str | None = None,
        xid: str = "x1",
    ) -> ExchangeRunner:
        """A runner for a fresh exchange (a new session unless ``sid`` is given)."""
        sid = sid or await new_session(self.store)
        created = await begin(self.store, sid, xid)
        request = ModelRequest(
            instructions="", messages=[Message(role="user", text="hello")], model=ModelSpec()
        )
        spec = ExchangeSpec(OWNER, sid, xid, "hello", created, interval_ms, request, {})
        return ExchangeRunner(spec, backend, self.batcher, self.keys, self.config, self.observer)


@contextlib.asynccontextmanager
async def rig_on(url: str, config: EngineConfig) -> AsyncIterator[Rig]:
    """A rig of its own on the Redis at ``url`` (e.g. a private one a test stops and starts)."""
    client = Redis.from_url(url, decode_responses=True)
    batcher = ScriptBatcher(url)
    keys = Keys(config.key_prefix)
    try:
        yield Rig(Store(client, keys, config, batcher), batcher, keys, config)
    finally:
        await batcher.close()
        await client.aclose()


def delta_entry(seq: int, value: str) -> bytes:
    return msgspec.json.encode(Delta(seq, value, Usage(output_tokens=seq).totalled()))


async def log_deltas(store: Store, sid: str, xid: str) -> list[tuple[str, Delta]]:
    """(stream id, delta) of every delta in the replay log, oldest first."""
    entries = await store.read_log(sid, xid, None)
    return [(e.id, Item(e.kind, e.id, e.data).delta()) for e in entries if e.kind == "delta"]


async def log_end(store: Store, sid: str, xid: str) -> Exchange | None:
    entries = await store.read_log(sid, xid, None)
    ends = [Item(e.kind, e.id, e.data).exchange() for e in entries if e.kind == "end"]
    assert len(ends) <= 1, ends
    return ends[0] if ends else None


def cache_writes(usage: Usage) -> tuple[int, int, int]:
    """Cache writes as (total, 5-minute, 1-hour)."""
    return (
        usage.cache_creation_input_tokens,
        usage.cache_creation_5m_input_tokens,
        usage.cache_creation_1h_input_tokens,
    )


def entry_ms(stream_id: str) -> int:
    """Redis's clock (epoch ms) when it wrote the log entry ``stream_id``."""
    return stream_key(stream_id)[0]
