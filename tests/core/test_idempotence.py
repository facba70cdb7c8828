"""Every write is safe to run twice: a call whose reply was lost is sent again unchanged, and
the second run changes nothing. Faults are made in-process: a batcher that runs a call, then
loses its reply."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.agent_store import _WRITE
from streams.batcher import ScriptBatcher
from streams.clock import now_ms
from streams.config import EngineConfig
from streams.ending import FINISH_SCRIPT, finish_args, finish_keys
from streams.errors import Conflict, NotFound
from streams.keys import Keys
from streams.records import usage_args, usage_from
from streams.runner import flush_keys
from streams.scripts import BEGIN, CREATE, FLUSH, SETTLE, Script
from streams.store import Store
from streams.types import NewSession, Usage
from tests.core.helpers import (
    OWNER,
    PacedBackend,
    RecordingObserver,
    Rig,
    begin,
    cache_writes,
    delta_entry,
    log_deltas,
    log_end,
    new_session,
    text,
)


class LosingBatcher(ScriptBatcher):
    """Runs every call, but loses the reply of the calls of ``script`` numbered in ``lose``."""

    def __init__(self, url: str, script: Script, lose: set[int]) -> None:
        super().__init__(url)
        self._script = script
        self._lose = lose
        self._count = 0

    def submit(self, script: Script, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        reply = super().submit(script, keys, args)
        if script.sha != self._script.sha:
            return reply
        self._count += 1
        if self._count not in self._lose:
            return reply
        lost: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        reply.add_done_callback(lambda _: lost.set_exception(RedisConnectionError("lost")))
        return lost


class CountingObserver(RecordingObserver):
    def __init__(self) -> None:
        super().__init__()
        self.applied = 0
        self.repeated = 0

    def flushed(self, *, repeated: bool) -> None:
        if repeated:
            self.repeated += 1
        else:
            self.applied += 1


async def session_usage(redis: Redis, keys: Keys, sid: str) -> Usage:
    return usage_from(await redis.hgetall(keys.session(sid)))  # type: ignore[misc]


async def exchange_usage(redis: Redis, keys: Keys, sid: str, xid: str) -> Usage:
    return usage_from(await redis.hgetall(keys.exchange(sid, xid)))  # type: ignore[misc]


# Cache writes of 10 tokens: 6 for 5 minutes, 4 for an hour.
SPLIT = Usage(input_tokens=3, cache_creation_input_tokens=10, cache_creation_1h_input_tokens=4)


async def test_a_flush_run_twice_writes_its_delta_and_usage_once(
    store: Store, batcher: ScriptBatcher, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    await begin(store, sid)
    args = [1, delta_entry(1, "Hello"), 3, 1, 0, 0, 0, 0, 10_000, 600]
    script = Script(FLUSH)

    first = await batcher.call(script, flush_keys(keys, sid, "x1"), args)
    second = await batcher.call(script, flush_keys(keys, sid, "x1"), args)

    assert first[2] == 0
    assert second == [first[0], 0, 1]
    assert [delta.text for _, delta in await log_deltas(store, sid, "x1")] == ["Hello"]
    assert (await session_usage(redis_client, keys, sid)).total_tokens == 4
    assert (await exchange_usage(redis_client, keys, sid, "x1")).total_tokens == 4


async def test_a_flush_run_twice_counts_its_cache_write_split_once(
    store: Store, batcher: ScriptBatcher, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    await begin(store, sid)
    args = [1, delta_entry(1, "Hello"), *usage_args(SPLIT.totalled()), 10_000, 600]

    for _ in range(2):
        await batcher.call(Script(FLUSH), flush_keys(keys, sid, "x1"), args)

    assert cache_writes(await session_usage(redis_client, keys, sid)) == (10, 6, 4)
    assert cache_writes(await exchange_usage(redis_client, keys, sid, "x1")) == (10, 6, 4)


async def test_a_finish_run_twice_counts_its_cache_write_split_once(
    store: Store, redis_client: Redis, keys: Keys, config: EngineConfig
) -> None:
    sid = await new_session(store)
    await begin(store, sid)
    running = await store.get_exchange(sid, "x1")
    assert running is not None
    completed = now_ms()
    usage = SPLIT.totalled()
    exchange = msgspec.structs.replace(
        running, status="completed", usage=usage, completed_ms=completed
    )
    args = finish_args(exchange, usage_args(usage), completed, config)

    for _ in range(2):
        await FINISH_SCRIPT(redis_client, finish_keys(keys, sid, "x1"), args)

    session = await session_usage(redis_client, keys, sid)
    assert cache_writes(session) == (10, 6, 4)
    assert session.total_tokens == 13
    assert cache_writes(await exchange_usage(redis_client, keys, sid, "x1")) == (10, 6, 4)


async def test_a_delta_whose_reply_was_lost_is_sent_again_and_written_once(
    redis_url: str, store: Store, redis_client: Redis, keys: Keys, config: EngineConfig
) -> None:
    batcher = LosingBatcher(redis_url, Script(FLUSH), lose={2})
    observer = CountingObserver()
    pieces = [f"t{i} " for i in range(12)]
    backend = PacedBackend([step for piece in pieces for step in (text(piece), 0.03)])
    try:
        runner = await Rig(store, batcher, keys, config, observer).runner(backend, interval_ms=50)
        exchange = await runner.run()
    finally:
        await batcher.close()

    assert exchange is not None and exchange.status == "completed"
    deltas = await log_deltas(store, runner.spec.sid, "x1")
    assert [delta.seq for _, delta in deltas] == list(range(1, len(deltas) + 1))
    assert "".join(delta.text for _, delta in deltas) == "".join(pieces) == exchange.reply_text
    assert observer.repeated == 1
    assert await session_usage(redis_client, keys, runner.spec.sid) == exchange.usage


async def test_an_end_whose_reply_was_lost_is_stored_once(
    redis_url: str, store: Store, redis_client: Redis, keys: Keys, config: EngineConfig
) -> None:
    batcher = LosingBatcher(redis_url, FINISH_SCRIPT, lose={1})
    backend = PacedBackend([text("Hello"), text(" world")])
    try:
        runner = await Rig(store, batcher, keys, config).runner(backend)
        exchange = await runner.run()
    finally:
        await batcher.close()

    assert exchange is not None and exchange.status == "completed"
    entries = await store.read_log(runner.spec.sid, "x1", None)
    assert [e.kind for e in entries].count("end") == 1
    assert await log_end(store, runner.spec.sid, "x1") == exchange
    assert await session_usage(redis_client, keys, runner.spec.sid) == exchange.usage
    stored = await store.get_exchange(runner.spec.sid, "x1")
    assert stored is not None and stored.completed_ms == exchange.completed_ms


async def test_a_begin_run_twice_by_one_call_is_no_duplicate(
    store: Store, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    begin_keys = [
        keys.session(sid),
        keys.lock(sid),
        keys.exchanges(sid),
        keys.exchange(sid, "x1"),
        keys.cancel(sid),
        keys.channel(sid),
    ]
    args = ["x1", OWNER, 1, 10_000, "hi", 600, 2, "{}", "call-1"]
    script = Script(BEGIN)

    outcomes = [await script(redis_client, begin_keys, args) for _ in range(2)]
    another_call = await script(redis_client, begin_keys, [*args[:-1], "call-2"])

    assert outcomes == ["ok", "ok"]
    assert another_call == "duplicate"
    assert await redis_client.lrange(keys.exchanges(sid), 0, -1) == ["x1"]
    assert await redis_client.hget(keys.session(sid), "count") == "1"


async def test_creating_a_session_twice_under_one_id_keeps_the_first(store: Store) -> None:
    first = await store.create_session(OWNER, NewSession(agent_id="echo", title="a"), "sid-1")

    again = await store.create_session(OWNER, NewSession(agent_id="echo", title="b"), "sid-1")

    assert again == first
    with pytest.raises(NotFound):
        await store.create_session("someone-else", NewSession(agent_id="echo"), "sid-1")


async def test_settling_a_cancelled_exchange_twice_counts_one_answer(
    store: Store, redis_client: Redis, keys: Keys
) -> None:
    sid = await new_session(store)
    await begin(store, sid)
    await redis_client.hset(keys.exchange(sid, "x1"), "status", "cancelled")
    script = Script(SETTLE)

    for _ in range(2):
        await script(redis_client, [keys.session(sid), keys.exchange(sid, "x1")], ["Mine", "1"])

    assert await redis_client.hget(keys.session(sid), "answered") == "1"
    assert await redis_client.hget(keys.exchange(sid, "x1"), "text") == "Mine"


async def test_an_agent_write_run_twice_by_one_call_publishes_one_version(
    redis_client: Redis, keys: Keys
) -> None:
    agent_keys = [keys.agent("a1"), keys.agent_index()]
    script = Script(_WRITE)

    first = await script(redis_client, agent_keys, ["create", "a1", '{"v":1}', 1, "call-1"])
    again = await script(redis_client, agent_keys, ["create", "a1", '{"v":1}', 1, "call-1"])
    publish = ["publish", "a1", '{"v":2}', 2, "call-2"]
    published = [await script(redis_client, agent_keys, publish) for _ in range(2)]

    assert first == again == ["ok", 1]
    assert published == [["ok", 2], ["ok", 2]]
    assert await redis_client.hget(keys.agent("a1"), "latest") == "2"


async def test_an_exclusive_create_refuses_an_id_in_use_by_anyone(store: Store) -> None:
    await store.create_session(OWNER, NewSession(agent_id="echo"), "sid-2")

    for owner in (OWNER, "someone-else"):
        with pytest.raises(Conflict):
            await store.create_session(owner, NewSession(agent_id="echo"), "sid-2", exclusive=True)


async def test_a_create_run_twice_by_one_call_is_created_both_times(
    redis_client: Redis, keys: Keys
) -> None:
    args = [OWNER, 600, "call-1", "owner", OWNER, "cid", "sid-3", "call", "call-1"]
    script = Script(CREATE)

    outcomes = [await script(redis_client, [keys.session("sid-3")], args) for _ in range(2)]
    another_call = await script(redis_client, [keys.session("sid-3")], [*args[:2], "call-2"])

    assert outcomes == ["created", "created"]
    assert another_call == "exists"
